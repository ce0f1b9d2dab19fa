"""A local HTTPS test site for integration tests: its own CA, a page with an image and a script.

Shared by the capture tests, the end-to-end notarization test and the browser tests.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image


CHROMIUM = Path("/usr/bin/chromium")
BANNER_RGB = (20, 160, 60)
LOCAL = frozenset({ip_network("127.0.0.1/32")})
EXAMPLE_SCREENSHOT = Path("/tmp/capture_example.png")


# -- the test site ------------------------------------------------------------------------------

def _png(colour: tuple[int, int, int], size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


PAGE = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Evidence test page</title></head>
<body style="margin:0">
<div id="banner" style="width:100%;height:400px;background:rgb{BANNER_RGB}"></div>
<p id="status">original text</p>
<img id="logo" src="/img.png" width="64" height="64">
<img id="tracker" src="http://10.0.0.1/tracker.png" width="1" height="1">
<script src="/app.js"></script>
<script>try {{ new WebSocket("wss://127.0.0.1:9/live"); }} catch (e) {{}}</script>
</body></html>
""".encode()
APP_JS = b"document.getElementById('status').textContent = 'modified by script: ' + (1 + 1);\n"
IMG = _png((200, 30, 30))


def _make_pki(names: list[str], ips: list[str]) -> tuple[bytes, bytes, bytes, bytes]:
    """(ca_pem, chain_pem (leaf + CA), key_pem, leaf_der)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Evidence Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ip_address(i)) for i in ips]
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return (ca.public_bytes(pem), leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem,
            leaf.public_bytes(serialization.Encoding.DER))


class Site:
    def __init__(self, tmp: Path) -> None:
        self.ca_pem, chain_pem, key_pem, self.leaf_der = _make_pki(["localhost", "site.test"], ["127.0.0.1"])
        self.ca_der = x509.load_pem_x509_certificate(self.ca_pem).public_bytes(serialization.Encoding.DER)
        (tmp / "chain.pem").write_bytes(chain_pem)
        (tmp / "key.pem").write_bytes(key_pem)
        self.release = threading.Event()  # lets slow handlers finish at teardown
        self.hits: list[tuple[str, str | None]] = []  # (path, Host header)
        self.sni: list[str | None] = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
        ctx.sni_callback = lambda sslsock, name, c: self.sni.append(name)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, ctype: str | None, body: bytes, extra: dict | None = None) -> None:
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                with contextlib.suppress(OSError):  # clients that gave up (timeouts, bounds)
                    self._get()

            def _get(self) -> None:
                site.hits.append((self.path, self.headers.get("Host")))
                p = self.path.split("?", 1)[0]
                if p in ("/", "/page"):
                    self._send(200, "text/html; charset=utf-8", PAGE, {"X-Test": "page"})
                elif p == "/gz":
                    self._send(200, "text/html; charset=utf-8", gzip.compress(PAGE), {"Content-Encoding": "gzip"})
                elif p == "/app.js":
                    self._send(200, "application/javascript", APP_JS)
                elif p == "/img.png":
                    self._send(200, "image/png", IMG)
                elif p == "/r1":
                    self._send(302, "text/plain", b"to r2", {"Location": "/r2"})
                elif p == "/r2":
                    self._send(301, "text/plain", b"to page", {"Location": "page"})
                elif p == "/loop":
                    self._send(302, "text/plain", b"again", {"Location": "/loop"})
                elif p == "/to-private":
                    self._send(302, "text/plain", b"inside", {"Location": "http://10.0.0.1/admin"})
                elif p == "/image":
                    self._send(200, "image/png", IMG)
                elif p == "/binary":
                    self._send(200, "application/octet-stream", b"\x00\x01binary")
                elif p == "/slow":
                    site.release.wait(20)
                    self._send(200, "text/html", b"<p>late</p>")
                elif p == "/huge-declared":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(10**9))
                    self.end_headers()
                elif p == "/huge":  # no Content-Length: streams until the client hangs up
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    chunk = b"<p>" + b"x" * 65536 + b"</p>\n"
                    with contextlib.suppress(OSError):
                        for _ in range(800):  # ~50 MB at most
                            if site.release.is_set():
                                break
                            self.wfile.write(chunk)
                else:
                    self._send(404, "text/html", b"<p>not found</p>")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test-site", daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
