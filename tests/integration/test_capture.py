"""Web capture end to end: a local HTTPS site (own CA), real headless Chromium, WACZ out.

The site runs on 127.0.0.1 with a CA and server certificate made here with ``cryptography``; the
capture trusts that CA through ``CapturePolicy.extra_ca_pem`` and allowlists 127.0.0.1/32 only.
Nothing outside 127.0.0.1 is contacted: a spy on ``socket.create_connection`` proves that the
private destinations (10.0.0.1) are refused before any connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PIL import Image
from warcio.archiveiterator import ArchiveIterator

from evidence_ledger.notary.capture import (
    PART_DOM,
    PART_MANIFEST,
    PART_SCREENSHOT,
    PART_WARC,
    CapturePolicy,
    WebCapture,
    capture_url,
    verify_wacz,
)
from evidence_ledger.notary.errors import (
    ArchiveIntegrityError,
    CaptureTimeoutError,
    FetchError,
    ResponseTooLargeError,
    UnsafeDestinationError,
    UnsupportedContentError,
)

from ..conftest import missing

pytestmark = pytest.mark.timeout(120)

from .testsite import BANNER_RGB, CHROMIUM, EXAMPLE_SCREENSHOT, IMG, LOCAL, PAGE, Site

class ConnectSpy:
    """Records every outgoing TCP connection of this process (httpx and pyOpenSSL use create_connection)."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, int]] = []
        self._orig = socket.create_connection

    def __enter__(self) -> ConnectSpy:
        def spy(address, *args, **kwargs):
            self.targets.append((str(address[0]), int(address[1])))
            if not str(address[0]).startswith("127."):
                raise AssertionError(f"test tried to connect to {address}")
            return self._orig(address, *args, **kwargs)

        socket.create_connection = spy
        return self

    def __exit__(self, *exc) -> None:
        socket.create_connection = self._orig


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        missing("chromium is not installed (make setup installs it)")
    return CHROMIUM


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("site"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def policy(site: Site, chromium: Path) -> CapturePolicy:
    return CapturePolicy(allow_networks=LOCAL, extra_ca_pem=site.ca_pem, timeout_s=20.0)


@pytest.fixture(scope="module")
def page_capture(site: Site, policy: CapturePolicy) -> tuple[WebCapture, list[tuple[str, int]], float]:
    with ConnectSpy() as spy:
        t0 = time.monotonic()
        cap = capture_url(site.url("/r1"), policy)
        elapsed = time.monotonic() - t0
    EXAMPLE_SCREENSHOT.write_bytes(cap.part(PART_SCREENSHOT).data)
    return cap, spy.targets, elapsed


def _warc_records(cap: WebCapture) -> list:
    out = []
    for rec in ArchiveIterator(io.BytesIO(cap.part(PART_WARC).data)):
        body = rec.content_stream().read()
        out.append((rec.rec_type, rec.rec_headers, rec.http_headers, body))
    return out


# -- the successful capture -----------------------------------------------------------------------

def test_capture_follows_redirects_and_records_every_hop(page_capture, site: Site) -> None:
    cap, _targets, elapsed = page_capture
    assert cap.url == site.url("/r1")
    assert cap.final_url == site.url("/page")
    assert cap.status == 200
    assert cap.captured_at.tzinfo is not None and cap.captured_at.utcoffset() == timedelta(0)
    chain = cap.manifest["request"]["redirect_chain"]
    assert [(h["url"], h["status"]) for h in chain] == [
        (site.url("/r1"), 302), (site.url("/r2"), 301), (site.url("/page"), 200)]
    assert elapsed < 15, elapsed


def test_warc_has_requests_responses_and_metadata_with_ip(page_capture, site: Site) -> None:
    cap, _, _ = page_capture
    recs = _warc_records(cap)
    assert recs[0][0] == "warcinfo"
    by_type: dict[str, list] = {}
    for r in recs:
        by_type.setdefault(r[0], []).append(r)
    for kind in ("request", "response", "metadata"):
        assert by_type.get(kind), f"no {kind} records"
        for _t, wh, _hh, _b in by_type[kind]:
            assert wh.get_header("WARC-IP-Address") == "127.0.0.1"
    responses = {wh.get_header("WARC-Target-URI"): (hh, body) for _t, wh, hh, body in by_type["response"]}
    for path in ("/r1", "/r2", "/page", "/app.js", "/img.png"):
        assert site.url(path) in responses, (path, sorted(responses))
    hh, body = responses[site.url("/page")]
    assert hh.get_statuscode() == "200" and hh.get_header("X-Test") == "page"
    assert body == PAGE
    assert responses[site.url("/img.png")][1] == IMG
    requests = {wh.get_header("WARC-Target-URI"): hh for _t, wh, hh, _b in by_type["request"]}
    page_req = requests[site.url("/page")]
    assert page_req.protocol.startswith("GET") or page_req.statusline.startswith("GET")
    assert page_req.get_header("Host") == f"127.0.0.1:{site.port}"
    # every request record points at its response
    resp_ids = {wh.get_header("WARC-Record-ID") for _t, wh, _h, _b in by_type["response"]}
    assert {wh.get_header("WARC-Concurrent-To") for _t, wh, _h, _b in by_type["request"]} <= resp_ids


def test_tls_chain_and_fingerprints_match_the_test_certificate(page_capture, site: Site) -> None:
    cap, _, _ = page_capture
    leaf_sha = hashlib.sha256(site.leaf_der).hexdigest()
    ca_sha = hashlib.sha256(site.ca_der).hexdigest()
    (tls,) = cap.manifest["tls"]
    assert tls["ip"] == "127.0.0.1" and tls["port"] == site.port
    assert [c["sha256"] for c in tls["chain"]] == [leaf_sha, ca_sha]
    assert x509.load_pem_x509_certificate(tls["chain"][0]["pem"].encode()).public_bytes(
        serialization.Encoding.DER) == site.leaf_der
    assert tls["protocol"].startswith("TLSv1.")
    assert tls["cipher"]
    assert tls["leaf_matches_fetch_connection"] is True
    main = next(e for e in cap.manifest["exchanges"] if e["url"] == site.url("/page"))
    assert main["tls"]["leaf_sha256"] == leaf_sha and main["tls"]["version"].startswith("TLSv1.")
    # the chain is in the WARC as well
    metas = [json.loads(b) for t, _w, _h, b in _warc_records(cap) if t == "metadata"]
    assert any(m.get("tls_chain", {}).get("chain", [{}])[0].get("sha256") == leaf_sha for m in metas)


def test_screenshot_shows_the_page(page_capture) -> None:
    cap, _, _ = page_capture
    shot = cap.part(PART_SCREENSHOT)
    assert shot.data.startswith(b"\x89PNG\r\n\x1a\n") and shot.media_type == "image/png"
    img = Image.open(io.BytesIO(shot.data)).convert("RGB")
    assert img.width == 1280 and img.height >= 400
    assert img.getpixel((100, 100)) == BANNER_RGB
    assert img.getpixel((1200, 350)) == BANNER_RGB
    # the sub-resource image rendered below the banner (red square)
    reds = sum(1 for x in range(0, 200) for y in range(400, img.height)
               if img.getpixel((x, y)) == (200, 30, 30))
    assert reds > 1000
    assert EXAMPLE_SCREENSHOT.read_bytes() == shot.data


def test_dom_is_the_rendered_page(page_capture) -> None:
    cap, _, _ = page_capture
    dom = cap.part(PART_DOM).data.decode()
    assert "modified by script: 2" in dom
    assert "original text" not in dom


def test_private_subresource_is_blocked_and_never_contacted(page_capture) -> None:
    cap, targets, _ = page_capture
    assert all(host == "127.0.0.1" for host, _ in targets), targets
    blocked = [n for n in cap.manifest["not_loaded"] if n["url"].startswith("http://10.0.0.1/")]
    assert blocked and blocked[0]["reason"] == "unsafe destination"
    assert "10.0.0.1" in blocked[0]["error"]
    assert any(n["resource_type"] == "websocket" for n in cap.manifest["not_loaded"])


def test_manifest_describes_environment_and_every_part(page_capture) -> None:
    cap, _, _ = page_capture
    m = cap.manifest
    env = m["environment"]
    assert env["tool"]["name"] == "evidence_ledger" and env["tool"]["version"]
    assert env["libraries"]["warcio"] and env["libraries"]["playwright"]
    assert env["browser"]["version"].split(".")[0].isdigit()
    assert "--no-proxy-server" in env["browser"]["command_line"]
    assert env["python"]["version"] and env["os"]["platform"]
    start = datetime.fromisoformat(env["clock"]["started_at"])
    end = datetime.fromisoformat(env["clock"]["finished_at"])
    assert start <= end
    assert m["clean_environment"]["passed"] is True, m["clean_environment"]
    assert {c["check"] for c in m["clean_environment"]["checks"]} >= {
        "direct fetch (httpx) uses no proxy", "Chromium uses no proxy"}
    assert m["dns"]["127.0.0.1"]["addresses"] == ["127.0.0.1"]
    assert m["resolved_ips"] == ["127.0.0.1"]
    parts = {p.name: p for p in cap.parts}
    assert set(m["parts"]) == set(parts) - {PART_MANIFEST}
    for name, info in m["parts"].items():
        assert bytes.fromhex(info["sha256"]) == parts[name].sha256 == hashlib.sha256(parts[name].data).digest()
    assert json.loads(parts[PART_MANIFEST].data) == m


def test_wacz_layout_and_verification(page_capture) -> None:
    cap, _, _ = page_capture
    zf = zipfile.ZipFile(io.BytesIO(cap.archive))
    names = set(zf.namelist())
    assert names == {p.name for p in cap.parts} | {"datapackage.json", "datapackage-digest.json"}
    assert {"archive/data.warc.gz", "pages/pages.jsonl", "indexes/index.cdx"} <= names
    dp = json.loads(zf.read("datapackage.json"))
    assert dp["wacz_version"] == "1.1.1" and dp["mainPageURL"] == cap.final_url
    for res in dp["resources"]:
        data = zf.read(res["path"])
        assert res["hash"] == "sha256:" + hashlib.sha256(data).hexdigest() and res["bytes"] == len(data)
    pages = [json.loads(line) for line in zf.read("pages/pages.jsonl").splitlines()]
    assert pages[0]["format"] == "json-pages-1.0" and pages[1]["url"] == cap.final_url
    cdx = zf.read("indexes/index.cdx").decode().splitlines()
    assert any(f"{cap.final_url}" in line for line in cdx)
    result = verify_wacz(cap.archive)
    assert result["valid"] is True and set(result["resources"]) == {p.name for p in cap.parts}


def _member_offset(archive: bytes, name: str) -> tuple[int, int]:
    zf = zipfile.ZipFile(io.BytesIO(archive))
    info = zf.getinfo(name)
    header = archive[info.header_offset:info.header_offset + 30]
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def test_one_flipped_byte_in_any_part_is_named(page_capture) -> None:
    cap, _, _ = page_capture
    zf = zipfile.ZipFile(io.BytesIO(cap.archive))
    for name in zf.namelist():
        start, size = _member_offset(cap.archive, name)
        assert size > 0, name
        tampered = bytearray(cap.archive)
        tampered[start + size // 2] ^= 0x01
        with pytest.raises(ArchiveIntegrityError) as ei:
            verify_wacz(bytes(tampered))
        assert ei.value.part == name, (name, str(ei.value))


def test_tampering_that_keeps_the_zip_valid_is_caught_by_hash(page_capture) -> None:
    cap, _, _ = page_capture
    src = zipfile.ZipFile(io.BytesIO(cap.archive))

    def rebuilt(replace: dict[str, bytes | None]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for n in src.namelist():
                if n in replace:
                    if replace[n] is not None:
                        out.writestr(n, replace[n])
                else:
                    out.writestr(n, src.read(n))
        return buf.getvalue()

    dom = src.read(PART_DOM).replace(b"modified by script", b"MODIFIED BY SCRIPT")
    with pytest.raises(ArchiveIntegrityError) as ei:
        verify_wacz(rebuilt({PART_DOM: dom}))
    assert ei.value.part == PART_DOM and "sha256" in str(ei.value)
    with pytest.raises(ArchiveIntegrityError) as ei:
        verify_wacz(rebuilt({PART_SCREENSHOT: None}))
    assert ei.value.part == PART_SCREENSHOT and "missing" in str(ei.value)
    with pytest.raises(ArchiveIntegrityError) as ei:
        verify_wacz(b"PK\x03\x04 this is not a zip")
    assert ei.value.part == "archive"


def test_capture_by_name_pins_the_ip_and_sends_sni_and_host(site: Site, policy: CapturePolicy) -> None:
    """A DNS name (injected resolver) is connected by its checked IP, with SNI and Host of the name."""
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return {"site.test": ["127.0.0.1"]}[host]

    site.sni.clear()
    cap = capture_url(site.url("/gz", host="site.test"), policy, resolver=resolver)
    assert asked == ["site.test"]  # resolved once; never again (no rebinding window)
    assert "site.test" in site.sni
    assert ("/gz", f"site.test:{site.port}") in site.hits
    assert cap.manifest["dns"]["site.test"]["addresses"] == ["127.0.0.1"]
    assert "modified by script: 2" in cap.part(PART_DOM).data.decode()
    gz = next(e for e in cap.manifest["exchanges"] if e["url"].endswith("/gz"))
    assert gz["ip"] == "127.0.0.1"
    verify_wacz(cap.archive)


# -- refusals and failures ------------------------------------------------------------------------

def _no_temp_left(before: set[str]) -> None:
    after = {p.name for p in Path("/tmp").glob("playwright*")}
    assert after <= before, after - before


@pytest.fixture
def tmp_snapshot() -> Iterator[None]:
    before = {p.name for p in Path("/tmp").glob("playwright*")}
    yield
    _no_temp_left(before)


def test_loopback_refused_without_allowlist(site: Site, chromium: Path, tmp_snapshot) -> None:
    with ConnectSpy() as spy, pytest.raises(UnsafeDestinationError, match=r"127\.0\.0\.1.*loopback"):
        capture_url(site.url("/page"), CapturePolicy(extra_ca_pem=site.ca_pem))
    assert spy.targets == []


def test_private_redirect_refused_before_connecting(site: Site, policy: CapturePolicy, tmp_snapshot) -> None:
    with ConnectSpy() as spy, pytest.raises(UnsafeDestinationError, match=r"10\.0\.0\.1.*private") as ei:
        capture_url(site.url("/to-private"), policy)
    assert "redirect" in str(ei.value)
    assert all(h == "127.0.0.1" for h, _ in spy.targets), spy.targets


def test_private_destinations_refused_directly_and_via_dns(policy: CapturePolicy, tmp_snapshot) -> None:
    with ConnectSpy() as spy:
        with pytest.raises(UnsafeDestinationError, match=r"10\.0\.0\.1"):
            capture_url("http://10.0.0.1/", policy)
        with pytest.raises(UnsafeDestinationError, match=r"169\.254\.169\.254"):
            capture_url("http://metadata.test/latest/", policy,
                        resolver=lambda h, p: ["93.184.216.34", "169.254.169.254"])
    assert spy.targets == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "javascript:alert(1)", "not a url"])
def test_non_http_urls_are_unsupported(url: str, policy: CapturePolicy) -> None:
    with pytest.raises(UnsupportedContentError, match="http"):
        capture_url(url, policy)


@pytest.mark.parametrize(("path", "mtype"), [("/image", "image/png"), ("/binary", "application/octet-stream")])
def test_non_html_main_document_is_unsupported(site: Site, policy: CapturePolicy, path: str, mtype: str,
                                               tmp_snapshot) -> None:
    with pytest.raises(UnsupportedContentError, match=mtype) as ei:
        capture_url(site.url(path), policy)
    assert "expected a web page" in str(ei.value)


def test_refused_port_is_a_fetch_error(policy: CapturePolicy, tmp_snapshot) -> None:
    port = free_port()
    with pytest.raises(FetchError, match=rf"127\.0\.0\.1:{port}"):
        capture_url(f"https://127.0.0.1:{port}/", policy)


def test_redirect_loop_is_a_fetch_error(site: Site, policy: CapturePolicy) -> None:
    with pytest.raises(FetchError, match="more than 3 redirects"):
        capture_url(site.url("/loop"), CapturePolicy(allow_networks=LOCAL, extra_ca_pem=site.ca_pem, max_redirects=3))


def test_slow_server_times_out(site: Site, policy: CapturePolicy, tmp_snapshot) -> None:
    slow = CapturePolicy(allow_networks=LOCAL, extra_ca_pem=site.ca_pem, timeout_s=4.0)
    t0 = time.monotonic()
    with pytest.raises(CaptureTimeoutError, match="4 s"):
        capture_url(site.url("/slow"), slow)
    assert time.monotonic() - t0 < 10


def test_huge_responses_are_bounded(site: Site, tmp_snapshot) -> None:
    small = CapturePolicy(allow_networks=LOCAL, extra_ca_pem=site.ca_pem, max_response_bytes=1_000_000)
    with pytest.raises(ResponseTooLargeError, match="Content-Length 1000000000 exceeds the bound of 1000000"):
        capture_url(site.url("/huge-declared"), small)
    t0 = time.monotonic()
    with pytest.raises(ResponseTooLargeError, match="exceeds the bound of 1000000 bytes per response"):
        capture_url(site.url("/huge"), small)
    assert time.monotonic() - t0 < 10


def test_untrusted_certificate_is_a_fetch_error(site: Site) -> None:
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        capture_url(site.url("/page"), CapturePolicy(allow_networks=LOCAL))


def test_capture_from_a_running_event_loop(site: Site, policy: CapturePolicy) -> None:
    import asyncio

    async def main() -> WebCapture:
        return capture_url(site.url("/page"), policy)

    cap = asyncio.run(main())
    assert cap.status == 200
    verify_wacz(cap.archive)


