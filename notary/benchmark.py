"""The notary benchmark: what evidence-grade handling costs over the bare minimum.

Three measures, each with its baseline side by side in one process, on the same bytes, at the
same moment, so the figures are ratios on the same machine rather than absolute times:

1. **Hashing + CID** (``ledger.blobs``): SHA-256 together with the IPFS CID (``CidBuilder``), as
   ``LocalBlobStore.put`` computes them, and ``LocalBlobStore.put`` itself (temp file, fsync, sidecar,
   rename), against ``hashlib.sha256`` alone (the physical limit) and against SHA-256 + write +
   fsync of a plain file.
2. **File notarization** through ``Notary.notarize_file`` end to end (blob put, canonical record
   signed with a server-held officer key, durable log appends in SQLite, evidence and custody rows)
   against what any archive does at minimum: SHA-256 and a fsynced write of the same file.
3. **Web capture** per page with ``capture.capture_url`` (guarded fetch, TLS chain, Chromium render,
   screenshot, DOM, WARC, WACZ) of a shop-listing page on a local HTTPS site started here
   (own CA, 127.0.0.1 only), against a plain ``httpx.get`` of the page and a bare Playwright
   ``goto`` + screenshot with the same Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import ssl
import statistics
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any, TypeVar

from evidence_ledger.ledger import db as ledger_db
from evidence_ledger.ledger.benchmark import Progress, percentile, print_table
from evidence_ledger.ledger.blobs import BlobRef, CidBuilder, LocalBlobStore
from evidence_ledger.ledger.log import Entry, LogStore

from . import db as notary_db
from .capture import CapturePolicy, capture_url
from .service import CUSTODY_LOG, EVIDENCE_LOG, Notary

__all__ = ["run_notary_benchmark"]

MIB = 1 << 20
#: The flags of the bare Playwright baseline (the capture adds its own isolation flags to these).
BARE_CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync")
_T = TypeVar("_T")



def _fs_type(path: Path) -> str:
    """The filesystem type of ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    p = str(path.resolve())
    for m in mounts:
        if len(m) >= 3 and (p == m[1] or p.startswith(m[1].rstrip("/") + "/")) and len(m[1]) > len(best):
            best, kind = m[1], m[2]
    return kind


# --------------------------------------------------------------------------- 1. hashing + CID


def _sha256_only(chunks: list[bytes]) -> bytes:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.digest()


def _sha256_and_cid(chunks: list[bytes]) -> tuple[bytes, str]:
    # Exactly what blobs._spool does per chunk, without the file.
    h = hashlib.sha256()
    cb = CidBuilder()
    for c in chunks:
        h.update(c)
        cb.update(c)
    return h.digest(), cb.finish()


def _cid_only(chunks: list[bytes]) -> str:
    cb = CidBuilder()
    for c in chunks:
        cb.update(c)
    return cb.finish()


def _sha256_write_fsync(chunks: Iterable[bytes], path: Path) -> bytes:
    """The minimum any archive does: hash the bytes and make them durable in a file."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for c in chunks:
            h.update(c)
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    return h.digest()


def _timed(fn: Callable[[], _T]) -> tuple[float, _T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _bench_hashing(p: Progress, work: Path, data_mb: int, rounds: int) -> dict[str, Any]:
    chunks = [os.urandom(MIB) for _ in range(data_mb)]
    mb = data_mb * MIB / 1e6
    times: dict[str, list[float]] = {k: [] for k in ("sha256", "sha256_cid", "cid", "put", "write_fsync")}
    sha = cid = None
    for r in range(rounds):
        # Interleaved per round so that drift hits every variant alike.
        t, sha = _timed(lambda: _sha256_only(chunks))
        times["sha256"].append(t)
        t, (sha2, cid) = _timed(lambda: _sha256_and_cid(chunks))
        times["sha256_cid"].append(t)
        t, cid2 = _timed(lambda: _cid_only(chunks))
        times["cid"].append(t)
        store = LocalBlobStore(work / f"put-{r}")
        t, ref = _timed(lambda: store.put(iter(chunks)))
        times["put"].append(t)
        t, sha3 = _timed(lambda: _sha256_write_fsync(chunks, work / f"plain-{r}.bin"))
        times["write_fsync"].append(t)
        if not (sha == sha2 == sha3 == ref.sha256 and cid == cid2 == ref.cid):
            raise AssertionError("hashing variants disagree on the same bytes")
        shutil.rmtree(work / f"put-{r}")
        (work / f"plain-{r}.bin").unlink()
        p.say(f"      round {r + 1}/{rounds}: sha256 {mb / times['sha256'][-1]:,.0f} MB/s, "
              f"sha256+CID {mb / times['sha256_cid'][-1]:,.0f} MB/s, put {mb / times['put'][-1]:,.0f} MB/s")
    med = {k: statistics.median(v) for k, v in times.items()}
    mbps = {k: round(mb / v, 1) for k, v in med.items()}
    return {
        "bytes": data_mb * MIB, "chunk_bytes": MIB, "rounds": rounds, "statistic": "median over rounds",
        "cid_example": cid, "sha256_example": sha.hex() if sha else None,
        "mb_per_s": {"sha256_alone": mbps["sha256"], "sha256_plus_cid": mbps["sha256_cid"],
                     "cid_alone": mbps["cid"], "localblobstore_put_incl_fsync": mbps["put"],
                     "sha256_write_fsync_plain_file": mbps["write_fsync"]},
        "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "ratios": {
            "sha256_plus_cid_vs_sha256": round(med["sha256"] / med["sha256_cid"], 3),
            "put_vs_sha256": round(med["sha256"] / med["put"], 3),
            "put_vs_sha256_write_fsync": round(med["write_fsync"] / med["put"], 3),
        },
    }


# --------------------------------------------------------------------------- 2. notarization


class _TimedBlobStore(LocalBlobStore):
    """LocalBlobStore that adds up the time spent in ``put`` (for the breakdown only)."""

    put_s = 0.0

    def put(self, chunks: Iterable[bytes], *, max_bytes: int | None = None) -> BlobRef:
        t0 = time.perf_counter()
        try:
            return super().put(chunks, max_bytes=max_bytes)
        finally:
            self.put_s += time.perf_counter() - t0


class _TimedLogStore(LogStore):
    """LogStore that adds up the time spent in durable appends (for the breakdown only)."""

    append_s = 0.0
    appends = 0

    def append(self, log_name: str, record: object, *, store_record: bool = True) -> Entry:
        t0 = time.perf_counter()
        try:
            return super().append(log_name, record, store_record=store_record)
        finally:
            self.append_s += time.perf_counter() - t0
            self.appends += 1


def _file_chunks(data: bytes) -> list[bytes]:
    return [data[i:i + MIB] for i in range(0, len(data), MIB)] or [b""]


def _bench_notarize(p: Progress, work: Path, n_files: int, file_kb: int) -> dict[str, Any]:
    size = file_kb * 1024
    contents = [os.urandom(size) for _ in range(n_files)]  # distinct: the blob store deduplicates
    engine = ledger_db.create_db_engine(f"sqlite:///{work / 'notary.db'}")
    try:
        ledger_db.migrate(engine)
        notary_db.migrate(engine)
        store = _TimedLogStore(engine)
        for name in (EVIDENCE_LOG, CUSTODY_LOG):
            store.ensure_log(name, f"bench.local/{name}")
        blobs = _TimedBlobStore(work / "blobs")
        notary = Notary(engine, store, blobs, os.urandom(32), None)
        agency = notary.register_agency("SAMR-BENCH", "Shenzhen Market Supervision Bureau", "market_regulation")
        officer = notary.register_officer(agency.id, "Li Wei", "officer")  # server-held key
        case = notary.create_case("SZ-2026-BENCH", "Counterfeit handbags on a live stream", agency.id,
                                  f"officer:{officer.id}")
        plain = work / "plain"
        plain.mkdir()

        def notarize(i: int, data: bytes) -> None:
            notary.notarize_file(officer.id, case.id, iter(_file_chunks(data)), filename=f"photo-{i:05d}.jpg",
                                 media_type="image/jpeg", device="bench", location="Shenzhen",
                                 description="benchmark file")

        # Warm-up (imports, first statements, page cache of the database), not counted.
        for w in range(3):
            blob = os.urandom(size)
            notarize(-1 - w, blob)
            _sha256_write_fsync(_file_chunks(blob), plain / f"warm-{w}")
        blobs.put_s = 0.0
        store.append_s, store.appends = 0.0, 0
        base_lat: list[float] = []
        ours_lat: list[float] = []
        for i, data in enumerate(contents):
            # Alternate file by file so both sides see the same disk and write-back state.
            t, _ = _timed(lambda: _sha256_write_fsync(_file_chunks(data), plain / f"{i:05d}.bin"))
            base_lat.append(t)
            t, _ = _timed(lambda: notarize(i, data))
            ours_lat.append(t)
            if (i + 1) % 100 == 0:
                p.say(f"      {i + 1} / {n_files}")
        ours_s, base_s = sum(ours_lat), sum(base_lat)
        size_evidence = store.tree_size(EVIDENCE_LOG)
        size_custody = store.tree_size(CUSTODY_LOG)
        if size_evidence != n_files + 3 or size_custody != n_files + 3:
            raise AssertionError(f"expected {n_files + 3} entries per log, got {size_evidence} / {size_custody}")
        mb = n_files * size / 1e6
        rest = ours_s - blobs.put_s - store.append_s
        return {
            "files": n_files, "file_bytes": size, "database": "sqlite (WAL, synchronous=FULL)",
            "officer_key": "server-held (Ed25519, encrypted under a 32-byte KEK)", "authority": None,
            "notarize": {"seconds": round(ours_s, 3), "files_per_s": round(n_files / ours_s, 1),
                         "mb_per_s": round(mb / ours_s, 1),
                         "latency_ms_p50": round(percentile(ours_lat, 0.5) * 1000, 2),
                         "latency_ms_p95": round(percentile(ours_lat, 0.95) * 1000, 2)},
            "baseline_sha256_write_fsync": {
                "seconds": round(base_s, 3), "files_per_s": round(n_files / base_s, 1),
                "mb_per_s": round(mb / base_s, 1),
                "latency_ms_p50": round(percentile(base_lat, 0.5) * 1000, 2),
                "latency_ms_p95": round(percentile(base_lat, 0.95) * 1000, 2)},
            "breakdown_ms_per_file": {
                "blob_put_sha256_cid_fsync": round(blobs.put_s / n_files * 1000, 2),
                "log_appends_durable": round(store.append_s / n_files * 1000, 2),
                "log_appends_per_file": round(store.appends / n_files, 2),
                "rest_sign_checks_db_rows": round(rest / n_files * 1000, 2)},
            "log_sizes": {"evidence": size_evidence, "custody": size_custody},
            "ratio_files_per_s_vs_baseline": round(base_s / ours_s, 3),
        }
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- 3. web capture


def _png(width: int, height: int, seed: int) -> bytes:
    """A product photo stand-in: a gradient with a noisy band (so it compresses like a photo, partly)."""
    rng = random.Random(seed)
    base = (rng.randrange(60, 220), rng.randrange(60, 220), rng.randrange(60, 220))
    rows = []
    for y in range(height):
        if height // 3 <= y < 2 * height // 3:
            row = rng.randbytes(width * 3)
        else:
            shade = (y * 255 // height)
            px = bytes(((base[0] + shade) // 2, (base[1] + shade) // 2, (base[2] + shade) // 2))
            row = px * width
        rows.append(b"\x00" + row)
    raw = zlib.compress(b"".join(rows), 6)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


_PRODUCTS = [("Leather tote bag", 389), ("Quilted shoulder bag", 1299), ("Canvas backpack", 259),
             ("Mini crossbody", 459), ("Travel duffel", 699), ("Card holder", 129),
             ("Weekender", 899), ("Bucket bag", 549), ("Clutch", 339), ("Belt bag", 219),
             ("Laptop sleeve", 189), ("Coin purse", 79)]
_N_IMAGES = 6

_SHOP_CSS = b"""
* { box-sizing: border-box; }
body { margin: 0; font-family: sans-serif; background: #f6f6f6; color: #222; }
header { background: #c8102e; color: #fff; padding: 18px 32px; display: flex; justify-content: space-between; }
header h1 { margin: 0; font-size: 26px; }
nav a { color: #fff; margin-left: 18px; text-decoration: none; }
.banner { height: 160px; background: linear-gradient(90deg, #ffb347, #ffcc33); display: flex;
          align-items: center; padding-left: 32px; font-size: 30px; font-weight: bold; }
.grid { display: grid; grid-template-columns: repeat(4, 1fr); gap: 20px; padding: 24px 32px; }
.card { background: #fff; border-radius: 8px; padding: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.15); }
.card img { width: 100%; height: auto; display: block; border-radius: 4px; }
.card h2 { font-size: 16px; margin: 10px 0 4px; }
.price { color: #c8102e; font-size: 20px; font-weight: bold; }
.sold { color: #888; font-size: 12px; }
footer { padding: 24px 32px; color: #666; font-size: 12px; }
"""

_SHOP_JS = b"""
(function () {
  var cards = document.querySelectorAll('.card');
  for (var i = 0; i < cards.length; i++) {
    var p = cards[i].querySelector('.price');
    var base = parseFloat(p.getAttribute('data-base'));
    p.textContent = '\\u00a5' + (base * 0.8).toFixed(2) + ' (-20% today)';
    var s = document.createElement('div');
    s.className = 'sold';
    s.textContent = (1000 + i * 137) + ' sold this month';
    cards[i].appendChild(s);
  }
  document.getElementById('cart').textContent = 'Cart (' + cards.length % 5 + ')';
})();
"""


def _shop_page() -> bytes:
    cards = "\n".join(
        f'<div class="card"><img src="/img/p{i % _N_IMAGES}.png" width="240" height="180" alt="{name}">'
        f'<h2>{name}</h2><div class="price" data-base="{price}">&yen;{price}.00</div></div>'
        for i, (name, price) in enumerate(_PRODUCTS))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Luxe Bags Outlet - official store</title>
<link rel="stylesheet" href="/static/shop.css"></head>
<body>
<header><h1>Luxe Bags Outlet</h1><nav><a href="/">Home</a><a href="/new">New</a>
<a href="/sale">Sale</a><a id="cart" href="/cart">Cart</a></nav></header>
<div class="banner">Brand-name bags, up to 80% off - authentic guaranteed</div>
<div class="grid">
{cards}
</div>
<footer>Luxe Bags Outlet Co., Ltd. &middot; Business licence 91440300MA5XXXXX &middot; Shenzhen</footer>
<script src="/static/app.js"></script>
</body></html>
""".encode()


def _make_pki(ips: list[str]) -> tuple[bytes, bytes, bytes]:
    """(ca_pem, chain_pem (leaf + CA), key_pem) for a throwaway CA and a server certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Evidence Bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName("localhost")] + [x509.IPAddress(ip_address(i)) for i in ips]
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem


class _ShopSite:
    """A shop-listing site over HTTPS on 127.0.0.1 (a free port), with its own CA."""

    def __init__(self, tmp: Path) -> None:
        self.ca_pem, chain_pem, key_pem = _make_pki(["127.0.0.1"])
        (tmp / "chain.pem").write_bytes(chain_pem)
        (tmp / "key.pem").write_bytes(key_pem)
        (tmp / "key.pem").chmod(0o600)
        self.files: dict[str, tuple[str, bytes]] = {
            "/": ("text/html; charset=utf-8", _shop_page()),
            "/static/shop.css": ("text/css", _SHOP_CSS),
            "/static/app.js": ("application/javascript", _SHOP_JS),
        }
        for i in range(_N_IMAGES):
            self.files[f"/img/p{i}.png"] = ("image/png", _png(240, 180, seed=i))
        self.hits = 0
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                site.hits += 1
                ctype, body = site.files.get(self.path.split("?", 1)[0], ("text/html", b"<p>not found</p>"))
                status = 200 if self.path.split("?", 1)[0] in site.files else 404
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="bench-shop", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def page_bytes(self) -> int:
        return sum(len(b) for _, b in self.files.values())

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _httpx_get(url: str, ca_pem: bytes) -> tuple[float, int]:
    import httpx

    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    t0 = time.perf_counter()
    r = httpx.get(url, verify=ctx, trust_env=False)
    r.raise_for_status()
    return time.perf_counter() - t0, len(r.content)


def _bare_playwright(url: str, chromium_path: Path, viewport: tuple[int, int]) -> dict[str, float]:
    """Start Playwright and Chromium, goto + full-page screenshot, close: the naive screenshot tool."""
    from playwright.sync_api import sync_playwright

    t0 = time.perf_counter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), headless=True,
                                     args=list(BARE_CHROMIUM_ARGS), env={"PATH": "/usr/bin:/bin"})
        try:
            t1 = time.perf_counter()
            # Chromium connects to the site itself here, so it must accept the benchmark's own CA.
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                          ignore_https_errors=True)
            page = context.new_page()
            page.goto(url, wait_until="load")
            png = page.screenshot(full_page=True, type="png")
            t2 = time.perf_counter()
            context.close()
        finally:
            browser.close()
    if not png.startswith(b"\x89PNG"):
        raise AssertionError("bare baseline: no PNG screenshot")
    return {"total_s": time.perf_counter() - t0, "start_s": t1 - t0, "goto_screenshot_s": t2 - t1,
            "screenshot_bytes": len(png)}


def _bench_capture(p: Progress, work: Path, pages: int, chromium_path: Path) -> dict[str, Any]:
    if not Path(chromium_path).exists():
        raise FileNotFoundError(f"Chromium not found at {chromium_path}")
    site = _ShopSite(work)
    try:
        policy = CapturePolicy(allow_networks=frozenset({ip_network("127.0.0.1/32")}),
                               extra_ca_pem=site.ca_pem, chromium_path=Path(chromium_path))
        httpx_s: list[float] = []
        bare: list[dict[str, float]] = []
        caps: list[dict[str, Any]] = []
        for i in range(pages + 1):  # round 0 warms the disk cache for Chromium and is not counted
            t_h, html_bytes = _httpx_get(site.url, site.ca_pem)
            b = _bare_playwright(site.url, Path(chromium_path), policy.viewport)
            t0 = time.perf_counter()
            cap = capture_url(site.url, policy)
            wall = time.perf_counter() - t0
            tm = cap.manifest["timings"]
            if cap.status != 200 or not cap.manifest["clean_environment"]["passed"]:
                raise AssertionError(f"capture failed: status {cap.status}")
            row = {"wall_s": wall, "browser_start_s": tm["browser_start_s"],
                   "direct_fetch_s": tm["direct_fetch_s"], "render_s": tm["render_s"],
                   "probe_other_s": max(0.0, tm["total_s"] - tm["browser_start_s"] - tm["direct_fetch_s"]
                                        - tm["render_s"]),
                   "package_s": max(0.0, wall - tm["total_s"]),
                   "wacz_bytes": len(cap.archive), "exchanges": len(cap.manifest["exchanges"]),
                   "not_loaded": len(cap.manifest["not_loaded"])}
            if i == 0:
                p.say(f"      warm-up: capture {wall:.2f} s, bare {b['total_s']:.2f} s, httpx {t_h * 1000:.1f} ms")
                continue
            httpx_s.append(t_h)
            bare.append(b)
            caps.append(row)
            p.say(f"      page {i}/{pages}: capture {wall:.2f} s, bare {b['total_s']:.2f} s, "
                  f"httpx {t_h * 1000:.1f} ms")

        def stats(values: list[float], digits: int = 3) -> dict[str, float]:
            return {"p50": round(percentile(values, 0.5), digits), "p95": round(percentile(values, 0.95), digits)}

        breakdown = {k: stats([c[k] for c in caps]) for k in
                     ("browser_start_s", "probe_other_s", "direct_fetch_s", "render_s", "package_s")}
        cap_wall = stats([c["wall_s"] for c in caps])
        bare_total = stats([b["total_s"] for b in bare])
        res = {
            "pages": pages, "warmup_rounds_excluded": 1, "url": site.url,
            "site": {"resources": len(site.files), "bytes": site.page_bytes, "html_bytes": html_bytes,
                     "tls": "own CA (ECDSA P-256), generated at runtime"},
            "chromium": str(chromium_path),
            "capture_url": {"wall_s": cap_wall, "breakdown_s": breakdown,
                            "wacz_bytes_p50": int(percentile([c["wacz_bytes"] for c in caps], 0.5)),
                            "exchanges": caps[-1]["exchanges"], "not_loaded": caps[-1]["not_loaded"],
                            "note": "render_s includes up to 3 s waiting for network idle (500 ms quiet)"},
            "baseline_bare_playwright": {
                "args": list(BARE_CHROMIUM_ARGS), "ignore_https_errors": True,
                "total_s": bare_total,
                "start_s": stats([b["start_s"] for b in bare]),
                "goto_screenshot_s": stats([b["goto_screenshot_s"] for b in bare])},
            "baseline_httpx_get": {"ms": stats([t * 1000 for t in httpx_s], 2)},
            "ratios": {
                "capture_vs_bare_playwright_p50": round(cap_wall["p50"] / bare_total["p50"], 2),
                "capture_vs_httpx_get_p50": round(cap_wall["p50"] / percentile(httpx_s, 0.5), 1),
            },
        }
        return res
    finally:
        site.stop()


# --------------------------------------------------------------------------- the benchmark


def _off_event_loop(fn: Callable[[], _T]) -> _T:
    """Playwright's sync API refuses to run on a thread with a running asyncio loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["ok"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, name="notary-bench")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["ok"]


def run_notary_benchmark(*, out_dir: Path = Path("bench"), console: Any = None, data_mb: int = 256,
                         files: int = 300, file_kb: int = 512, pages: int = 5,
                         chromium_path: Path = Path("/usr/bin/chromium")) -> dict[str, Any]:
    """Run the three notary measures with their baselines; print a table, write ``out_dir/notary.json``.

    ``data_mb`` MiB of random bytes for hashing (1 MiB chunks, median of 3 rounds); ``files`` files
    of ``file_kb`` KiB notarized one by one; ``pages`` web captures (after one warm-up round).
    Returns the results as written to the JSON file.
    """
    if data_mb < 1 or files < 1 or file_kb < 1 or pages < 1:
        raise ValueError("data_mb, files, file_kb and pages must be at least 1")
    p = Progress(console)
    work = Path(tempfile.mkdtemp(prefix="notary-bench-"))
    results: dict[str, Any] = {
        "benchmark": "notary", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "openssl": ssl.OPENSSL_VERSION, "work_dir_filesystem": _fs_type(work)},
    }
    t_start = time.perf_counter()
    try:
        p.say(f"[1/3] hashing: {data_mb} MiB in 1 MiB chunks, sha256 / sha256+CID / LocalBlobStore.put "
              "(median of 3 rounds)")
        (work / "hash").mkdir()
        results["hashing"] = _bench_hashing(p, work / "hash", data_mb, rounds=3)
        shutil.rmtree(work / "hash", ignore_errors=True)

        p.say(f"[2/3] notarize_file: {files} files of {file_kb} KiB (SQLite, server-held officer key) "
              "against sha256 + write + fsync")
        (work / "notary").mkdir()
        results["notarize_file"] = _bench_notarize(p, work / "notary", files, file_kb)
        shutil.rmtree(work / "notary", ignore_errors=True)

        p.say(f"[3/3] web capture: {pages} pages of a local HTTPS shop listing (+1 warm-up round)")
        (work / "site").mkdir()
        results["web_capture"] = _off_event_loop(lambda: _bench_capture(p, work / "site", pages, chromium_path))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["runtime_s"] = round(time.perf_counter() - t_start, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "notary.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)
    p.say(f"written {out}")
    return results


def _print_table(r: dict[str, Any]) -> None:
    h, n, c = r["hashing"], r["notarize_file"], r["web_capture"]
    hm, hr = h["mb_per_s"], h["ratios"]
    nn, nb = n["notarize"], n["baseline_sha256_write_fsync"]
    cw, cb = c["capture_url"]["wall_s"], c["baseline_bare_playwright"]
    bd = c["capture_url"]["breakdown_s"]
    nbd = n["breakdown_ms_per_file"]
    rows = [
        ("sha256 + CID, MB/s", f"{hm['sha256_plus_cid']:,}", f"{hm['sha256_alone']:,} (sha256 alone)",
         f"{hr['sha256_plus_cid_vs_sha256']}x"),
        ("LocalBlobStore.put incl. fsync, MB/s", f"{hm['localblobstore_put_incl_fsync']:,}",
         f"{hm['sha256_alone']:,} (sha256 alone)", f"{hr['put_vs_sha256']}x"),
        ("", "", f"{hm['sha256_write_fsync_plain_file']:,} (sha256+write+fsync)",
         f"{hr['put_vs_sha256_write_fsync']}x"),
        (f"notarize_file {n['file_bytes'] // 1024} KiB, files/s", f"{nn['files_per_s']:,}",
         f"{nb['files_per_s']:,} (sha256+write+fsync)", f"{n['ratio_files_per_s_vs_baseline']}x"),
        ("notarize_file, MB/s", f"{nn['mb_per_s']:,}", f"{nb['mb_per_s']:,}", ""),
        ("notarize_file latency p50 / p95, ms", f"{nn['latency_ms_p50']} / {nn['latency_ms_p95']}",
         f"{nb['latency_ms_p50']} / {nb['latency_ms_p95']}", ""),
        ("  of which blob put / log appends / rest, ms",
         f"{nbd['blob_put_sha256_cid_fsync']} / {nbd['log_appends_durable']} / {nbd['rest_sign_checks_db_rows']}",
         "", ""),
        ("web capture per page p50 / p95, s", f"{cw['p50']} / {cw['p95']}",
         f"{cb['total_s']['p50']} / {cb['total_s']['p95']} (bare playwright)",
         f"{c['ratios']['capture_vs_bare_playwright_p50']}x the time"),
        ("", "", f"{c['baseline_httpx_get']['ms']['p50']} ms / {c['baseline_httpx_get']['ms']['p95']} ms (httpx.get)",
         f"{c['ratios']['capture_vs_httpx_get_p50']}x the time"),
        ("  browser start / probe / fetch / render / package p50, s",
         " / ".join(str(bd[k]["p50"]) for k in ("browser_start_s", "probe_other_s", "direct_fetch_s",
                                                "render_s", "package_s")),
         f"start {cb['start_s']['p50']} / goto+shot {cb['goto_screenshot_s']['p50']}", ""),
    ]
    print_table(("measure", "notary", "baseline", "ratio"), rows)
