"""Fix a web page as served, so that a court can accept it: WARC + screenshot + DOM + manifest, in a WACZ.

``capture_url(url, policy)`` does, in order:

1. **Check the destination** (:mod:`.netguard`): http(s) only, every resolved address public or
   inside ``policy.allow_networks``; nothing connects before this.
2. **Start a clean browser**: the given Chromium binary, a fresh temporary profile, no extensions,
   ``--no-proxy-server``, and ``--host-resolver-rules=MAP * ~NOTFOUND`` so that Chromium itself can
   neither resolve a name nor open a connection. Service workers are blocked, WebSockets are
   answered locally and closed. Every HTTP(S) request the browser makes is intercepted
   (``context.route``) and served by the guarded fetcher below, so the browser sees exactly the
   bytes that go into the WARC, and nothing reaches the network unchecked. What was launched is
   read back from the browser (``chrome://version`` command line) and recorded.
3. **Fetch the main document directly** with httpx: connected to the checked IP (DNS-rebinding
   proof), SNI and ``Host`` of the original name, certificates verified, redirects followed by
   hand with every hop checked, bodies streamed under size bounds. The TLS chain as served is read
   over a second pinned connection with pyOpenSSL, and the leaf is compared with the certificate
   the fetch connection saw.
4. **Render**: Chromium navigates to the final URL; the navigation is answered with the fetched
   document; sub-resources go through the fetcher (one at a time, checked, bounded, recorded);
   destinations that are not allowed are aborted and listed. Then a full-page PNG screenshot and
   the rendered DOM (HTML after scripts).
5. **Package** a WACZ 1.1.1: ``archive/data.warc.gz`` (warcinfo, request, response and metadata
   records; WARC-IP-Address on each exchange), ``indexes/index.cdx`` (CDXJ), ``pages/pages.jsonl``,
   ``capture/screenshot.png``, ``capture/dom.html``, ``capture/manifest.json`` and
   ``datapackage.json`` + ``datapackage-digest.json``. The manifest describes the capture
   environment and holds the SHA-256 of every other part; datapackage.json holds the SHA-256 of
   every resource including the manifest. Signing is done elsewhere over the manifest digest.

A failed capture raises a :class:`~.errors.CaptureError` subclass and leaves nothing behind: all
data stays in memory and the browser (and its temporary profile) is closed in every case.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import platform
import re
import select
import socket
import ssl
import sys
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .. import __version__ as TOOL_VERSION
from . import netguard
from .errors import (
    ArchiveIntegrityError,
    CaptureError,
    CaptureTimeoutError,
    FetchError,
    ResponseTooLargeError,
    UnsafeDestinationError,
    UnsupportedContentError,
)
from .netguard import Destination, Resolver

TOOL_NAME = "evidence_ledger"
WACZ_VERSION = "1.1.1"
HTML_TYPES = ("text/html", "application/xhtml+xml")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Only encodings we can always decode (and bound while decoding).
ACCEPT_ENCODING = "gzip, deflate"
NAV_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
#: Request headers the browser gives that the fetcher sets itself (or that are per-connection).
_DROP_REQUEST_HEADERS = {"host", "connection", "content-length", "accept-encoding", "transfer-encoding",
                         "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade",
                         "trailer"}
#: Response headers that describe the transfer, not the content handed to the browser.
_DROP_FULFIL_HEADERS = {"content-encoding", "content-length", "transfer-encoding", "connection",
                        "keep-alive", "trailer"}

CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
    "--no-proxy-server",
    # Chromium cannot resolve any name: everything it loads comes through the route handler.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    # No WebRTC UDP (STUN) traffic that would bypass interception.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)

PART_WARC = "archive/data.warc.gz"
PART_INDEX = "indexes/index.cdx"
PART_PAGES = "pages/pages.jsonl"
PART_SCREENSHOT = "capture/screenshot.png"
PART_DOM = "capture/dom.html"
PART_MANIFEST = "capture/manifest.json"
DATAPACKAGE = "datapackage.json"
DATAPACKAGE_DIGEST = "datapackage-digest.json"


# -- public types -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CapturePolicy:
    allow_networks: frozenset = frozenset()
    timeout_s: float = 30.0
    max_response_bytes: int = 20 * 2**20
    max_total_bytes: int = 100 * 2**20
    max_redirects: int = 10
    chromium_path: Path = Path("/usr/bin/chromium")
    viewport: tuple[int, int] = (1280, 800)
    user_agent: str | None = None
    tls_verify: bool = True
    extra_ca_pem: bytes | None = None  # trusted in addition to the system store (tests: their own CA)

    def as_evidence(self) -> dict:
        return {"allow_networks": sorted(str(n) for n in self.allow_networks),
                "timeout_s": self.timeout_s, "max_response_bytes": self.max_response_bytes,
                "max_total_bytes": self.max_total_bytes, "max_redirects": self.max_redirects,
                "chromium_path": str(self.chromium_path), "viewport": list(self.viewport),
                "user_agent": self.user_agent, "tls_verify": self.tls_verify,
                "extra_ca_sha256": hashlib.sha256(self.extra_ca_pem).hexdigest() if self.extra_ca_pem else None}


@dataclass(frozen=True)
class CapturedPart:
    name: str  # path inside the WACZ
    media_type: str
    data: bytes
    sha256: bytes


@dataclass(frozen=True)
class WebCapture:
    url: str
    final_url: str
    status: int
    captured_at: datetime  # aware UTC, start of the capture
    parts: tuple[CapturedPart, ...]
    manifest: dict
    archive: bytes  # the WACZ (zip) holding every part + manifest

    def part(self, name: str) -> CapturedPart:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def manifest_sha256(self) -> bytes:
        return self.part(PART_MANIFEST).sha256


# -- helpers ----------------------------------------------------------------------------------

def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self.end = time.monotonic() + seconds

    def remaining(self, what: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise CaptureTimeoutError(f"{what}: the capture took longer than the timeout of {self.total:g} s")
        return left


def _media_type(headers: list[tuple[str, str]]) -> str | None:
    for k, v in headers:
        if k.lower() == "content-type":
            return v.split(";", 1)[0].strip().lower() or None
    return None


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))


def _decode_body(raw: bytes, encoding: str | None, limit: int, url: str) -> bytes:
    """Undo Content-Encoding (gzip, deflate), never producing more than ``limit`` bytes."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    data = raw
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            d = zlib.decompressobj(wbits=zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 else -zlib.MAX_WBITS)
        else:
            raise FetchError(f"{url}: unsupported Content-Encoding {coding!r} (asked for {ACCEPT_ENCODING})")
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as e:
            raise FetchError(f"{url}: corrupt {coding} body: {e}") from e
        if len(out) > limit:
            raise ResponseTooLargeError(f"{url}: decoded body exceeds the bound of {limit} bytes")
        data = out
    return data


def _pem(der: bytes) -> str:
    b64 = base64.b64encode(der).decode("ascii")
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) \
        + "\n-----END CERTIFICATE-----\n"


# -- the guarded fetcher ----------------------------------------------------------------------

class _TotalTooLargeError(ResponseTooLargeError):
    """The capture as a whole exceeded ``max_total_bytes`` (fatal, unlike one oversized sub-resource)."""


@dataclass
class _Exchange:
    url: str
    method: str
    role: str  # "main", "redirect" (a hop of the main document), "subresource"
    resource_type: str
    dest: Destination
    peer_ip: str
    request_target: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int
    reason: str
    http_version: str
    response_headers: list[tuple[str, str]]
    body: bytes  # as transferred (after de-chunking, before content decoding)
    started_at: datetime
    finished_at: datetime
    tls: dict | None = None  # version, cipher, leaf_sha256 of the fetch connection
    record_id: str = field(default_factory=lambda: f"<urn:uuid:{uuid.uuid4()}>")

    def summary(self) -> dict:
        return {"url": self.url, "method": self.method, "role": self.role,
                "resource_type": self.resource_type, "status": self.status,
                "ip": self.peer_ip, "port": self.dest.port,
                "media_type": _media_type(self.response_headers),
                "bytes": len(self.body), "payload_sha256": hashlib.sha256(self.body).hexdigest(),
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
                "tls": self.tls, "warc_record_id": self.record_id}


class _Fetcher:
    """One-hop HTTP(S) fetches to checked, pinned addresses, under size and time bounds."""

    def __init__(self, policy: CapturePolicy, resolver: Resolver | None, deadline: _Deadline) -> None:
        self.policy = policy
        # One DNS answer per host for the whole capture: every request to that host is pinned to
        # the addresses checked the first time (no rebinding between requests either).
        base = resolver or netguard.system_resolver
        answers: dict[tuple[str, int], list] = {}

        def pinned_resolver(host: str, port: int) -> list:
            if (host, port) not in answers:
                answers[(host, port)] = list(base(host, port))
            return answers[(host, port)]

        self.resolver = pinned_resolver
        self.deadline = deadline
        self.total_bytes = 0
        self.exchanges: list[_Exchange] = []
        self.dns: dict[str, dict] = {}
        self.tls_chains: dict[tuple[str, str, int], dict] = {}
        self._clients: dict[tuple[str, str, int, str], httpx.Client] = {}
        self.ssl_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if policy.extra_ca_pem:
            try:
                self.ssl_context.load_verify_locations(cadata=policy.extra_ca_pem.decode("ascii"))
            except (ssl.SSLError, ValueError, UnicodeDecodeError) as e:
                raise CaptureError(f"policy.extra_ca_pem is not a PEM certificate: {e}") from e
        if not policy.tls_verify:
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    # - destinations -

    def check(self, url: str) -> Destination:
        dest = netguard.check_url(url, self.policy.allow_networks, self.resolver)
        self.dns.setdefault(dest.host, dest.as_evidence())
        return dest

    def _client(self, dest: Destination, ip: str) -> httpx.Client:
        key = (dest.scheme, dest.host, dest.port, ip)
        if key not in self._clients:
            # No proxies, no environment (trust_env=False), our own transport, no retries.
            transport = httpx.HTTPTransport(verify=self.ssl_context, http1=True, http2=False, retries=0,
                                            trust_env=False)
            self._clients[key] = httpx.Client(transport=transport, trust_env=False, follow_redirects=False,
                                              headers={})
        return self._clients[key]

    def proxy_check(self) -> dict:
        """What the HTTP client would use as proxy, observed on a client built like the real ones."""
        probe = httpx.Client(transport=httpx.HTTPTransport(retries=0, trust_env=False), trust_env=False)
        try:
            mounts = getattr(probe, "_mounts", None)
            return {"check": "direct fetch (httpx) uses no proxy",
                    "expected": "trust_env=False, no proxy mounts, explicit HTTPTransport without proxy",
                    "observed": {"trust_env": probe.trust_env,
                                 "proxy_mounts": None if mounts is None else {str(k): repr(v) for k, v in mounts.items()},
                                 "transport": type(getattr(probe, "_transport", None)).__name__},
                    "passed": probe.trust_env is False and mounts == {}}
        finally:
            probe.close()

    # - one hop -

    def fetch_one(self, url: str, dest: Destination, *, method: str = "GET", headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"", role: str, resource_type: str, html_only: bool = False) -> _Exchange:
        errors: list[CaptureError] = []
        for ip in dest.addresses:
            try:
                return self._fetch_ip(url, dest, ip, method, list(headers), body, role, resource_type, html_only)
            except FetchError as e:
                if isinstance(e.__cause__, httpx.ConnectError) and "CERTIFICATE" not in str(e):
                    errors.append(e)  # try the next checked address
                    continue
                raise
        raise errors[-1] if len(errors) == 1 else FetchError("; ".join(str(e) for e in errors))

    def _fetch_ip(self, url: str, dest: Destination, ip: str, method: str, headers: list[tuple[str, str]],
                  body: bytes, role: str, resource_type: str, html_only: bool) -> _Exchange:
        pol = self.policy
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_in_url = f"[{ip}]" if ":" in ip else ip
        pinned = f"{dest.scheme}://{host_in_url}:{dest.port}{target}"
        hdrs = [("Host", dest.host_header)] + headers
        extensions: dict = {}
        if dest.scheme == "https" and not dest.host_is_ip:
            extensions["sni_hostname"] = dest.host  # certificate checked against the name, not the IP
        client = self._client(dest, ip)
        started = _utcnow()
        left = self.deadline.remaining(f"fetching {url}")
        req = client.build_request(method, pinned, headers=hdrs, content=body or None,
                                   timeout=httpx.Timeout(left), extensions=extensions)
        try:
            resp = client.send(req, stream=True)
        except httpx.TimeoutException as e:
            raise CaptureTimeoutError(f"{url}: no answer from {dest.host} ({ip}:{dest.port}) within "
                                      f"{self.deadline.total:g} s ({type(e).__name__})") from e
        except httpx.ConnectError as e:
            raise FetchError(f"{url}: cannot connect to {dest.host} ({ip}:{dest.port}): {e}") from e
        except httpx.HTTPError as e:
            raise FetchError(f"{url}: {type(e).__name__} talking to {dest.host} ({ip}:{dest.port}): {e}") from e
        try:
            tls = None
            peer_ip = ip
            stream = resp.extensions.get("network_stream")
            if stream is not None:
                server_addr = stream.get_extra_info("server_addr")
                if server_addr:
                    peer_ip = str(server_addr[0])
                sslobj = stream.get_extra_info("ssl_object")
                if sslobj is not None:
                    leaf = sslobj.getpeercert(True)  # DER; positional: this is _ssl._SSLSocket
                    cipher = sslobj.cipher()
                    tls = {"version": sslobj.version(), "cipher": cipher[0] if cipher else None,
                           "cipher_bits": cipher[2] if cipher else None,
                           "sni": extensions.get("sni_hostname"),
                           "leaf_sha256": hashlib.sha256(leaf).hexdigest() if leaf else None,
                           "verified": pol.tls_verify}
            if peer_ip != ip:  # cannot happen with a pinned URL; refuse loudly if it ever does
                raise UnsafeDestinationError(f"{url}: connected to {peer_ip}, not the checked {ip}")
            raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw]
            is_redirect = resp.status_code in REDIRECT_STATUSES and _header(raw_headers, "location")
            if html_only and not is_redirect:
                mt = _media_type(raw_headers)
                if mt is not None and mt not in HTML_TYPES:
                    raise UnsupportedContentError(
                        f"{url}: expected a web page ({' or '.join(HTML_TYPES)}), the server sent "
                        f"{mt!r} (HTTP {resp.status_code})")
            declared = _header(raw_headers, "content-length")
            if declared and declared.strip().isdigit() and int(declared) > pol.max_response_bytes:
                raise ResponseTooLargeError(f"{url}: Content-Length {int(declared)} exceeds the bound of "
                                            f"{pol.max_response_bytes} bytes per response")
            buf = bytearray()
            try:
                for chunk in resp.iter_raw():
                    buf += chunk
                    if len(buf) > pol.max_response_bytes:
                        raise ResponseTooLargeError(f"{url}: response exceeds the bound of "
                                                    f"{pol.max_response_bytes} bytes per response (stopped reading)")
                    if self.total_bytes + len(buf) > pol.max_total_bytes:
                        raise _TotalTooLargeError(f"{url}: the capture exceeds the bound of "
                                                    f"{pol.max_total_bytes} bytes in total (stopped reading)")
                    self.deadline.remaining(f"reading {url}")
            except httpx.TimeoutException as e:
                raise CaptureTimeoutError(f"{url}: body not received within {self.deadline.total:g} s") from e
            except httpx.HTTPError as e:
                raise FetchError(f"{url}: {type(e).__name__} while reading the body: {e}") from e
            body_bytes = bytes(buf)
            if html_only and not is_redirect and _media_type(raw_headers) is None and not _looks_like_html(body_bytes):
                raise UnsupportedContentError(f"{url}: expected a web page, the server sent no Content-Type "
                                              f"and the body does not look like HTML (starts {body_bytes[:16]!r})")
            self.total_bytes += len(body_bytes)
            ex = _Exchange(
                url=url, method=method, role=role, resource_type=resource_type, dest=dest, peer_ip=peer_ip,
                request_target=resp.request.url.raw_path.decode("ascii"),
                request_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.request.headers.raw],
                request_body=body, status=resp.status_code, reason=resp.reason_phrase or "",
                http_version=resp.http_version or "HTTP/1.1", response_headers=raw_headers, body=body_bytes,
                started_at=started, finished_at=_utcnow(), tls=tls)
        finally:
            resp.close()
        if dest.scheme == "https":
            self._record_chain(dest, ip, tls)
        self.exchanges.append(ex)
        return ex

    def fetch_following(self, url: str, *, method: str, headers: list[tuple[str, str]], body: bytes = b"",
                        role: str, resource_type: str, html_only: bool = False) -> list[_Exchange]:
        """Fetch, following redirects by hand; each hop is checked before anything connects to it."""
        hops: list[_Exchange] = []
        current = url
        dest = self.check(current)
        while True:
            hop_role = role
            ex = self.fetch_one(current, dest, method=method, headers=headers, body=body, role=hop_role,
                                resource_type=resource_type, html_only=html_only)
            hops.append(ex)
            location = _header(ex.response_headers, "location")
            if ex.status not in REDIRECT_STATUSES or not location:
                return hops
            if role == "main":
                ex.role = "redirect"
            if len(hops) > self.policy.max_redirects:
                raise FetchError(f"{url}: more than {self.policy.max_redirects} redirects "
                                 f"(last: {ex.status} to {location})")
            try:
                dest = netguard.check_redirect(current, location, self.policy.allow_networks, self.resolver)
            except UnsafeDestinationError as e:
                raise UnsafeDestinationError(f"redirect {ex.status} from {current} to {location} refused: {e}") from e
            except UnsupportedContentError as e:
                raise UnsupportedContentError(f"redirect {ex.status} from {current} to {location}: {e}") from e
            self.dns.setdefault(dest.host, dest.as_evidence())
            current = dest.url
            if ex.status == 303 and method != "HEAD":
                method, body = "GET", b""

    # - TLS chain as served -

    def _record_chain(self, dest: Destination, ip: str, fetch_tls: dict | None) -> None:
        key = (dest.host, ip, dest.port)
        if key in self.tls_chains:
            return
        info = _read_tls_chain(dest, ip, self.deadline)
        leaf = info["chain"][0]["sha256"] if info["chain"] else None
        info["leaf_matches_fetch_connection"] = bool(fetch_tls and leaf == fetch_tls.get("leaf_sha256"))
        info["fetch_connection"] = fetch_tls
        self.tls_chains[key] = info


def _read_tls_chain(dest: Destination, ip: str, deadline: _Deadline) -> dict:
    """The certificate chain the server presents (pyOpenSSL over a pinned connection, with SNI)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)  # verification is the fetch's job; here we record
    sock = netguard.connect_pinned(dest, deadline.remaining(f"TLS handshake with {dest.host}"), ip)
    try:
        conn = SSL.Connection(ctx, sock)
        if not dest.host_is_ip:
            conn.set_tlsext_host_name(dest.host.encode("ascii"))
        conn.set_connect_state()
        sock.setblocking(False)
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                wait = ([sock], [])
            except SSL.WantWriteError:
                wait = ([], [sock])
            except SSL.Error as e:
                raise FetchError(f"TLS handshake with {dest.host} ({ip}:{dest.port}) failed: {e}") from e
            r, w, _ = select.select(wait[0], wait[1], [], deadline.remaining(f"TLS handshake with {dest.host}"))
            if not r and not w:
                raise CaptureTimeoutError(f"TLS handshake with {dest.host} ({ip}:{dest.port}) timed out")
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        out = {"host": dest.host, "ip": ip, "port": dest.port, "sni": None if dest.host_is_ip else dest.host,
               "protocol": conn.get_protocol_version_name(), "cipher": conn.get_cipher_name(), "chain": []}
        for cert in chain:
            der = cert.public_bytes(Encoding.DER)
            out["chain"].append({
                "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "serial": format(cert.serial_number, "x"),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "sha256": cert.fingerprint(hashes.SHA256()).hex(),
                "pem": _pem(der)})
        try:
            conn.shutdown()
        except SSL.Error:
            pass
        return out
    finally:
        sock.close()


# -- the browser ------------------------------------------------------------------------------

class _Render:
    """Results of the browser step."""

    def __init__(self) -> None:
        self.screenshot = b""
        self.dom = ""
        self.title = ""
        self.page_url = ""
        self.browser_version = ""
        self.user_agent = ""
        self.command_line = ""
        self.not_loaded: list[dict] = []
        self.websockets: list[str] = []
        self.fatal: CaptureError | None = None


def _browser_checks(cmdline: str) -> list[dict]:
    args = cmdline.split(" ")
    load_ext = [a for a in args if a.startswith("--load-extension=") and a.split("=", 1)[1]]
    proxy = [a for a in args if a.startswith(("--proxy-server", "--proxy-pac-url", "--proxy-auto-detect"))]
    profile = [a.split("=", 1)[1] for a in args if a.startswith("--user-data-dir=")]
    return [
        {"check": "Chromium uses no proxy", "expected": "--no-proxy-server, and no --proxy-server/--proxy-pac-url",
         "observed": {"no_proxy_server": "--no-proxy-server" in args, "proxy_args": proxy},
         "passed": "--no-proxy-server" in args and not proxy},
        {"check": "Chromium cannot reach the network on its own",
         "expected": "--host-resolver-rules=MAP * ~NOTFOUND; every request served by the guarded fetcher",
         "observed": "--host-resolver-rules=MAP * ~NOTFOUND" in cmdline,
         "passed": "--host-resolver-rules=MAP * ~NOTFOUND" in cmdline},
        {"check": "Chromium runs without extensions", "expected": "--disable-extensions, no --load-extension=<path>",
         "observed": {"disable_extensions": "--disable-extensions" in args, "load_extension": load_ext},
         "passed": "--disable-extensions" in args and not load_ext},
        {"check": "Chromium uses a fresh temporary profile", "expected": "a new playwright temporary user-data-dir",
         "observed": profile, "passed": len(profile) == 1 and "playwright" in profile[0]},
    ]


def _render(fetcher: _Fetcher, policy: CapturePolicy, main: _Exchange, deadline: _Deadline,
            browser, result: _Render) -> None:
    from playwright.sync_api import Error as PWError
    from playwright.sync_api import TimeoutError as PWTimeout

    width, height = policy.viewport
    context = browser.new_context(
        viewport={"width": width, "height": height}, user_agent=result.user_agent,
        # Chromium never connects itself (everything is fulfilled from verified fetches); the flag
        # only matters for the test CA, as the brief requires.
        ignore_https_errors=policy.extra_ca_pem is not None,
        service_workers="block", accept_downloads=False, java_script_enabled=True)
    try:
        main_body = _decode_body(main.body, _header(main.response_headers, "content-encoding"),
                                 policy.max_response_bytes, main.url)
        served_main = False

        def fulfil(route, ex: _Exchange, body: bytes) -> None:
            merged: dict[str, str] = {}
            for k, v in ex.response_headers:
                lk = k.lower()
                if lk in _DROP_FULFIL_HEADERS:
                    continue
                merged[lk] = f"{merged[lk]}{chr(10) if lk == 'set-cookie' else ', '}{v}" if lk in merged else v
            route.fulfill(status=ex.status, headers=merged, body=body)

        def on_route(route) -> None:
            nonlocal served_main
            req = route.request
            url = req.url
            try:
                if result.fatal is not None:
                    route.abort("failed")
                    return
                if not served_main and req.is_navigation_request():  # our own goto(final URL)
                    served_main = True
                    fulfil(route, main, main_body)
                    return
                if req.method.upper() not in SAFE_METHODS:
                    result.not_loaded.append({"url": url, "method": req.method, "resource_type": req.resource_type,
                                              "reason": "read-only capture: method not sent"})
                    route.abort("blockedbyclient")
                    return
                headers = [(k, v) for k, v in req.all_headers().items()
                           if k.lower() not in _DROP_REQUEST_HEADERS and not k.startswith(":")]
                headers.append(("Accept-Encoding", ACCEPT_ENCODING))
                try:
                    hops = fetcher.fetch_following(url, method=req.method.upper(), headers=headers,
                                                   body=req.post_data_buffer or b"", role="subresource",
                                                   resource_type=req.resource_type)
                    final = hops[-1]
                    body = _decode_body(final.body, _header(final.response_headers, "content-encoding"),
                                        policy.max_response_bytes, final.url)
                except CaptureTimeoutError as e:
                    result.fatal = e
                    route.abort("timedout")
                    return
                except ResponseTooLargeError as e:
                    result.not_loaded.append({"url": url, "method": req.method, "resource_type": req.resource_type,
                                              "reason": "too large", "error": str(e)})
                    if isinstance(e, _TotalTooLargeError):
                        result.fatal = e  # the capture as a whole is over its bound
                    route.abort("failed")
                    return
                except UnsafeDestinationError as e:
                    result.not_loaded.append({"url": url, "method": req.method, "resource_type": req.resource_type,
                                              "reason": "unsafe destination", "error": str(e)})
                    route.abort("blockedbyclient")
                    return
                except CaptureError as e:
                    result.not_loaded.append({"url": url, "method": req.method, "resource_type": req.resource_type,
                                              "reason": type(e).__name__, "error": str(e)})
                    route.abort("failed")
                    return
                fulfil(route, final, body)
            except PWError:
                pass  # the page went away while we were fetching; nothing to answer

        def on_websocket(ws) -> None:
            result.websockets.append(ws.url)
            result.not_loaded.append({"url": ws.url, "method": "GET", "resource_type": "websocket",
                                      "reason": "websockets are not captured"})
            try:
                ws.close(code=1008, reason="not captured")
            except PWError:
                pass

        context.route("**/*", on_route)
        context.route_web_socket(re.compile(".*"), on_websocket)
        page = context.new_page()
        try:
            page.goto(main.url, wait_until="load", timeout=deadline.remaining("loading the page") * 1000)
        except PWTimeout as e:
            raise result.fatal or CaptureTimeoutError(
                f"{main.url}: the page did not finish loading within {policy.timeout_s:g} s") from e
        except PWError as e:
            raise result.fatal or FetchError(f"{main.url}: the browser could not render the page: "
                                             f"{str(e).splitlines()[0]}") from e
        try:
            page.wait_for_load_state("networkidle", timeout=min(3.0, deadline.remaining("settling")) * 1000)
        except PWTimeout:
            pass
        if result.fatal is not None:
            raise result.fatal
        try:
            result.title = page.title()
            result.page_url = page.url
            result.dom = page.content()
            result.screenshot = page.screenshot(full_page=True, type="png", animations="disabled",
                                                timeout=deadline.remaining("screenshot") * 1000)
        except PWTimeout as e:
            raise CaptureTimeoutError(f"{main.url}: screenshot/DOM not taken within {policy.timeout_s:g} s") from e
        except PWError as e:
            raise CaptureError(f"{main.url}: taking the screenshot/DOM failed: {str(e).splitlines()[0]}") from e
        if result.fatal is not None:
            raise result.fatal
    finally:
        try:
            context.close()
        except PWError:
            pass


# -- WARC / WACZ ------------------------------------------------------------------------------

def _warc_date(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _build_warc(fetcher: _Fetcher, warcinfo: dict, started: datetime) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True, warc_version="WARC/1.1")
    info = writer.create_warcinfo_record("data.warc.gz", warcinfo)
    info.rec_headers.replace_header("WARC-Date", _warc_date(started))
    writer.write_record(info)
    seen_chains: set[tuple[str, str, int]] = set()
    for ex in fetcher.exchanges:
        date = _warc_date(ex.finished_at)
        resp_headers = StatusAndHeaders(f"{ex.status} {ex.reason}".strip(), ex.response_headers,
                                        protocol=ex.http_version)
        response = writer.create_warc_record(
            ex.url, "response", payload=io.BytesIO(ex.body), http_headers=resp_headers,
            warc_headers_dict={"WARC-Record-ID": ex.record_id, "WARC-Date": date, "WARC-IP-Address": ex.peer_ip})
        # httpx speaks HTTP/1.1 (http2 disabled), whatever version the server answers with
        req_headers = StatusAndHeaders(f"{ex.method} {ex.request_target} HTTP/1.1", ex.request_headers,
                                       is_http_request=True)
        request = writer.create_warc_record(
            ex.url, "request", payload=io.BytesIO(ex.request_body), http_headers=req_headers,
            warc_headers_dict={"WARC-Date": _warc_date(ex.started_at), "WARC-IP-Address": ex.peer_ip,
                               "WARC-Concurrent-To": ex.record_id})
        meta = {"role": ex.role, "resource_type": ex.resource_type,
                "dns": fetcher.dns.get(ex.dest.host), "connected_ip": ex.peer_ip, "tls": ex.tls,
                "started_at": _iso(ex.started_at), "finished_at": _iso(ex.finished_at),
                "payload_sha256": hashlib.sha256(ex.body).hexdigest()}
        key = (ex.dest.host, ex.peer_ip, ex.dest.port)
        if key in fetcher.tls_chains and key not in seen_chains:
            seen_chains.add(key)
            chain = fetcher.tls_chains[key]
            meta["tls_chain"] = {k: v for k, v in chain.items()}
        metadata = writer.create_warc_record(
            ex.url, "metadata", payload=io.BytesIO(json.dumps(meta, indent=1).encode()),
            warc_content_type="application/json",
            warc_headers_dict={"WARC-Date": date, "WARC-IP-Address": ex.peer_ip, "WARC-Concurrent-To": ex.record_id})
        for rec in (response, request, metadata):
            writer.write_record(rec)
    return buf.getvalue()


def _surt(url: str) -> str:
    p = urlsplit(url)
    host = (p.hostname or "").lower()
    if netguard._parse_ip(host) is None:
        host = ",".join(reversed(host.removeprefix("www.").split(".")))
    if p.port and p.port != netguard.DEFAULT_PORTS.get(p.scheme):
        host += f":{p.port}"
    query = "&".join(sorted(p.query.split("&"))) if p.query else ""
    return f"{host}){(p.path or '/').lower()}" + (f"?{query.lower()}" if query else "")


def _build_cdxj(warc: bytes) -> bytes:
    from warcio.archiveiterator import ArchiveIterator

    lines = []
    it = ArchiveIterator(io.BytesIO(warc))
    for rec in it:
        if rec.rec_type != "response":
            rec.content_stream().read()
            continue
        url = rec.rec_headers.get_header("WARC-Target-URI")
        date = rec.rec_headers.get_header("WARC-Date")
        ts = re.sub(r"\D", "", date)[:14]
        entry = {"url": url, "mime": (rec.http_headers.get_header("Content-Type") or "").split(";")[0].strip(),
                 "status": rec.http_headers.get_statuscode(),
                 "digest": rec.rec_headers.get_header("WARC-Payload-Digest"),
                 "filename": "data.warc.gz"}
        rec.content_stream().read()
        it.read_to_end()
        entry["offset"] = it.get_record_offset()
        entry["length"] = it.get_record_length()
        lines.append(f"{_surt(url)} {ts} {json.dumps(entry, sort_keys=True)}")
    return ("\n".join(sorted(lines)) + "\n").encode()


def _zip(entries: list[tuple[str, bytes]], when: datetime) -> bytes:
    buf = io.BytesIO()
    stamp = when.astimezone(UTC).timetuple()[:6]
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, date_time=stamp)
            zi.compress_type = zipfile.ZIP_STORED  # random access into the WARC, as WACZ recommends
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return buf.getvalue()


_MEDIA_TYPES = {PART_WARC: "application/warc", PART_INDEX: "application/cdxj+json",
                PART_PAGES: "application/x-ndjson", PART_SCREENSHOT: "image/png",
                PART_DOM: "text/html; charset=utf-8", PART_MANIFEST: "application/json"}


# -- the capture ------------------------------------------------------------------------------

def capture_url(url: str, policy: CapturePolicy, *, resolver: Resolver | None = None) -> WebCapture:
    """Capture ``url`` under ``policy``; see the module docstring. ``resolver`` is for tests.

    Uses Playwright's sync API; called from a thread that runs an asyncio loop, the capture runs in
    a worker thread (and this call blocks: use ``asyncio.to_thread`` from async code).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _capture(url, policy, resolver)
    box: dict = {}

    def run() -> None:
        try:
            box["ok"] = _capture(url, policy, resolver)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, name="web-capture")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["ok"]


def _capture(url: str, policy: CapturePolicy, resolver: Resolver | None) -> WebCapture:
    started = _utcnow()
    t0 = time.monotonic()
    deadline = _Deadline(policy.timeout_s)
    fetcher = _Fetcher(policy, resolver, deadline)
    # 1. nothing connects anywhere before the destination is checked
    first = fetcher.check(url)
    url = first.url.strip()
    if not Path(policy.chromium_path).exists():
        raise CaptureError(f"Chromium not found at {policy.chromium_path} (expected an installed browser)")

    from playwright.sync_api import Error as PWError
    from playwright.sync_api import sync_playwright

    render = _Render()
    timings: dict[str, float] = {}
    try:
        with sync_playwright() as pw:
            try:
                browser = pw.chromium.launch(
                    executable_path=str(policy.chromium_path), headless=True, args=list(CHROMIUM_ARGS),
                    env={"PATH": "/usr/bin:/bin"},  # not the capturing process's environment
                    timeout=deadline.remaining("starting Chromium") * 1000)
            except PWError as e:
                raise CaptureError(f"cannot start Chromium at {policy.chromium_path}: "
                                   f"{str(e).splitlines()[0]}") from e
            try:
                timings["browser_start_s"] = round(time.monotonic() - t0, 3)
                render.browser_version = browser.version
                cdp = browser.new_browser_cdp_session()
                ver = cdp.send("Browser.getVersion")
                cdp.detach()
                render.user_agent = policy.user_agent or ver.get("userAgent", "")
                probe = browser.new_page()
                try:
                    probe.goto("chrome://version", timeout=deadline.remaining("reading chrome://version") * 1000)
                    render.command_line = probe.inner_text("#command_line", timeout=5000)
                except PWError:
                    render.command_line = ""
                finally:
                    probe.close()

                # 2. the main document, fetched directly
                t1 = time.monotonic()
                hops = fetcher.fetch_following(
                    url, method="GET", role="main", resource_type="document", html_only=True,
                    headers=[("User-Agent", render.user_agent), ("Accept", NAV_ACCEPT),
                             ("Accept-Encoding", ACCEPT_ENCODING), ("Connection", "keep-alive")])
                main = hops[-1]
                timings["direct_fetch_s"] = round(time.monotonic() - t1, 3)

                # 3. render it in the browser
                t2 = time.monotonic()
                _render(fetcher, policy, main, deadline, browser, render)
                timings["render_s"] = round(time.monotonic() - t2, 3)
            finally:
                try:
                    browser.close()
                except PWError:
                    pass
    finally:
        fetcher.close()
    finished = _utcnow()
    timings["total_s"] = round(time.monotonic() - t0, 3)
    return _package(url, policy, started, finished, fetcher, hops, render, timings)


def _package(url: str, policy: CapturePolicy, started: datetime, finished: datetime, fetcher: _Fetcher,
             hops: list[_Exchange], render: _Render, timings: dict) -> WebCapture:
    main = hops[-1]
    import OpenSSL

    environment = {
        "tool": {"name": TOOL_NAME, "version": TOOL_VERSION},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "libraries": {"warcio": _version("warcio"), "playwright": _version("playwright"), "httpx": httpx.__version__,
                      "httpcore": _version("httpcore"), "pyopenssl": OpenSSL.__version__,
                      "cryptography": _version("cryptography"), "openssl": ssl.OPENSSL_VERSION},
        "browser": {"name": "Chromium", "version": render.browser_version, "path": str(policy.chromium_path),
                    "user_agent": render.user_agent, "launch_args": list(CHROMIUM_ARGS),
                    "command_line": render.command_line, "viewport": list(policy.viewport)},
        "os": {"platform": platform.platform(), "system": platform.system(), "release": platform.release(),
               "machine": platform.machine(), "hostname": socket.gethostname()},
        "clock": {"source": "system clock, UTC", "started_at": _iso(started), "finished_at": _iso(finished)},
    }
    checks = [fetcher.proxy_check()] + _browser_checks(render.command_line)
    checks.append({"check": "Chromium service workers", "expected": "blocked", "observed": "blocked", "passed": True})
    checks.append({"check": "Chromium environment", "expected": "not the capturing process's environment",
                   "observed": "launched with env={PATH=/usr/bin:/bin} only", "passed": True})
    warcinfo = {"software": f"{TOOL_NAME} {TOOL_VERSION} (warcio {_version('warcio')}, "
                            f"playwright {_version('playwright')}, Chromium {render.browser_version})",
                "format": "WARC File Format 1.1", "conformsTo": "https://iipc.github.io/warc-specifications/",
                "isPartOf": "evidence web capture", "description": f"capture of {url}",
                "hostname": socket.gethostname(), "http-header-user-agent": render.user_agent}
    warc = _build_warc(fetcher, warcinfo, started)
    index = _build_cdxj(warc)
    page_id = str(uuid.uuid4())
    pages = (json.dumps({"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}) + "\n"
             + json.dumps({"id": page_id, "url": main.url, "ts": _iso(started), "title": render.title}) + "\n").encode()
    dom = render.dom.encode("utf-8")
    parts_data = [(PART_WARC, warc), (PART_INDEX, index), (PART_PAGES, pages),
                  (PART_SCREENSHOT, render.screenshot), (PART_DOM, dom)]
    manifest = {
        "manifest_version": 1,
        "kind": "web-capture",
        "request": {"url": url, "final_url": main.url, "status": main.status, "browser_url": render.page_url,
                    "title": render.title,
                    "redirect_chain": [{"url": h.url, "status": h.status, "location": _header(h.response_headers, "location")}
                                       for h in hops]},
        "captured_at": _iso(started),
        "environment": environment,
        "clean_environment": {"passed": all(c["passed"] for c in checks), "checks": checks},
        "policy": policy.as_evidence(),
        "dns": fetcher.dns,
        "resolved_ips": sorted({ex.peer_ip for ex in fetcher.exchanges}),
        "tls": list(fetcher.tls_chains.values()),
        "exchanges": [ex.summary() for ex in fetcher.exchanges],
        "not_loaded": render.not_loaded,
        "timings": timings,
        "parts": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                         "media_type": _MEDIA_TYPES[name]} for name, data in parts_data},
    }
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")
    parts_data.append((PART_MANIFEST, manifest_bytes))
    parts = tuple(CapturedPart(name=n, media_type=_MEDIA_TYPES[n], data=d, sha256=_sha256(d)) for n, d in parts_data)
    datapackage = {
        "profile": "data-package",
        "wacz_version": WACZ_VERSION,
        "title": render.title or main.url,
        "description": f"Evidence capture of {url}",
        "created": _iso(finished),
        "modified": _iso(finished),
        "software": f"{TOOL_NAME} {TOOL_VERSION}",
        "mainPageURL": main.url,
        "mainPageDate": _iso(started),
        "resources": [{"name": Path(p.name).name, "path": p.name, "hash": f"sha256:{p.sha256.hex()}",
                       "bytes": len(p.data)} for p in parts],
    }
    dp_bytes = json.dumps(datapackage, indent=1).encode("utf-8")
    digest = {"path": DATAPACKAGE, "hash": f"sha256:{hashlib.sha256(dp_bytes).hexdigest()}"}
    archive = _zip([(p.name, p.data) for p in parts]
                   + [(DATAPACKAGE, dp_bytes), (DATAPACKAGE_DIGEST, json.dumps(digest, indent=1).encode())], started)
    return WebCapture(url=url, final_url=main.url, status=main.status, captured_at=started, parts=parts,
                      manifest=manifest, archive=archive)


# -- verification -----------------------------------------------------------------------------

def _parse_hash(value: object, part: str) -> str:
    if not isinstance(value, str) or not value.startswith("sha256:") or len(value) != 7 + 64:
        raise ArchiveIntegrityError(part, f"expected a 'sha256:<64 hex>' hash, found {value!r}")
    return value[7:].lower()


def verify_wacz(archive: bytes) -> dict:
    """Re-hash every resource of a WACZ; raise ArchiveIntegrityError naming the first part that fails.

    Checks: the zip is readable (CRC included); datapackage.json matches datapackage-digest.json;
    every resource listed exists and has the listed SHA-256 and size; no file is present that is not
    listed; the capture manifest (when present) agrees with the resources it lists.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except (zipfile.BadZipFile, ValueError, TypeError) as e:
        raise ArchiveIntegrityError("archive", f"expected a WACZ (zip) archive: {e}") from e

    def read(name: str) -> bytes:
        try:
            return zf.read(name)
        except KeyError as e:
            raise ArchiveIntegrityError(name, "missing from the archive") from e
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError) as e:
            raise ArchiveIntegrityError(name, f"unreadable (corrupt) in the archive: {e}") from e

    with zf:
        names = zf.namelist()
        if len(names) != len(set(names)):
            dup = next(n for n in names if names.count(n) > 1)
            raise ArchiveIntegrityError(dup, "appears more than once in the archive")
        digest_raw = read(DATAPACKAGE_DIGEST)
        try:
            digest = json.loads(digest_raw)
        except ValueError as e:
            raise ArchiveIntegrityError(DATAPACKAGE_DIGEST, f"not JSON: {e}") from e
        if not isinstance(digest, dict) or digest.get("path") != DATAPACKAGE:
            raise ArchiveIntegrityError(DATAPACKAGE_DIGEST, f"expected path {DATAPACKAGE!r}")
        expected_dp = _parse_hash(digest.get("hash"), DATAPACKAGE_DIGEST)
        dp_raw = read(DATAPACKAGE)
        actual_dp = hashlib.sha256(dp_raw).hexdigest()
        if actual_dp != expected_dp:
            raise ArchiveIntegrityError(DATAPACKAGE, f"sha256 is {actual_dp}, datapackage-digest.json says {expected_dp}")
        try:
            dp = json.loads(dp_raw)
            resources = dp["resources"]
        except (ValueError, KeyError, TypeError) as e:
            raise ArchiveIntegrityError(DATAPACKAGE, f"expected JSON with a 'resources' list: {e}") from e
        verified: dict[str, dict] = {}
        for res in resources:
            path = res.get("path") if isinstance(res, dict) else None
            if not isinstance(path, str) or not path:
                raise ArchiveIntegrityError(DATAPACKAGE, f"resource without a path: {res!r}")
            want = _parse_hash(res.get("hash"), path)
            data = read(path)
            got = hashlib.sha256(data).hexdigest()
            if got != want:
                raise ArchiveIntegrityError(path, f"sha256 is {got}, datapackage.json says {want}")
            if res.get("bytes") is not None and res["bytes"] != len(data):
                raise ArchiveIntegrityError(path, f"{len(data)} bytes, datapackage.json says {res['bytes']}")
            verified[path] = {"sha256": got, "bytes": len(data)}
        for name in names:
            if name not in verified and name not in (DATAPACKAGE, DATAPACKAGE_DIGEST) and not name.endswith("/"):
                raise ArchiveIntegrityError(name, "present in the archive but not listed in datapackage.json")
        manifest = None
        if PART_MANIFEST in verified:
            try:
                manifest = json.loads(read(PART_MANIFEST))
            except ValueError as e:
                raise ArchiveIntegrityError(PART_MANIFEST, f"not JSON: {e}") from e
            for path, info in (manifest.get("parts") or {}).items():
                if path not in verified:
                    raise ArchiveIntegrityError(path, "listed in the capture manifest but not in the archive")
                if info.get("sha256") != verified[path]["sha256"]:
                    raise ArchiveIntegrityError(path, f"sha256 is {verified[path]['sha256']}, the capture manifest "
                                                      f"says {info.get('sha256')}")
    return {"valid": True, "wacz_version": dp.get("wacz_version"), "main_page_url": dp.get("mainPageURL"),
            "created": dp.get("created"), "datapackage_sha256": actual_dp, "resources": verified,
            "manifest_sha256": verified.get(PART_MANIFEST, {}).get("sha256"),
            "final_url": (manifest or {}).get("request", {}).get("final_url")}
