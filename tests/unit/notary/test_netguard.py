"""netguard: which destinations a capture may contact (no network: resolvers are injected)."""

from __future__ import annotations

import contextlib
import socket
from ipaddress import ip_network

import pytest

from evidence_ledger.notary import netguard
from evidence_ledger.notary.errors import FetchError, UnsafeDestinationError, UnsupportedContentError
from evidence_ledger.notary.netguard import check_address, check_redirect, check_url, forbidden_reason


def fixed(answers: dict[str, list[str]], calls: list | None = None):
    def resolver(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append((host, port))
        return answers[host]
    return resolver


PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8", "1.1.1.1"]
FORBIDDEN = {
    "10.0.0.1": "private", "172.16.5.4": "private", "192.168.1.1": "private",
    "127.0.0.1": "loopback", "127.9.9.9": "loopback", "169.254.169.254": "link-local",
    "224.0.0.1": "multicast", "0.0.0.0": "unspecified", "240.0.0.1": "reserved",
    "255.255.255.255": "", "100.64.0.1": "shared", "192.0.2.10": "", "198.18.0.1": "",
    "::1": "loopback", "::": "unspecified", "fe80::1": "link-local", "fc00::1": "private",
    "fd12:3456::1": "private", "ff02::1": "multicast", "::ffff:127.0.0.1": "embeds IPv4 127.0.0.1 (loopback)",
    "::ffff:10.0.0.1": "", "::ffff:169.254.169.254": "",
    "2002:a00:1::1": "embeds IPv4 10.0.0.1",  # 6to4 of 10.0.0.1
    "64:ff9b::a9fe:a9fe": "embeds IPv4 169.254.169.254",  # NAT64 of the metadata service
    "2001:db8::1": "",  # documentation
}


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_addresses_pass(addr: str) -> None:
    assert forbidden_reason(addr) is None
    assert check_address(addr) == addr


@pytest.mark.parametrize(("addr", "word"), sorted(FORBIDDEN.items()))
def test_forbidden_addresses_are_refused(addr: str, word: str) -> None:
    reason = forbidden_reason(addr)
    assert reason is not None
    assert word in reason
    with pytest.raises(UnsafeDestinationError) as ei:
        check_url("https://shop.example/item?id=1", resolver=fixed({"shop.example": [addr]}))
    msg = str(ei.value)
    assert "shop.example" in msg and str(netguard._parse_ip(addr)) in msg


def test_public_host_returns_every_resolved_address_in_order() -> None:
    calls: list = []
    dest = check_url("https://Shop.Example:8443/a/b?c=d#frag",
                     resolver=fixed({"shop.example": ["93.184.216.34", "1.1.1.1", "93.184.216.34"]}, calls))
    assert calls == [("shop.example", 8443)]
    assert dest.addresses == ("93.184.216.34", "1.1.1.1")
    assert dest.pinned == "93.184.216.34"
    assert (dest.scheme, dest.host, dest.port) == ("https", "shop.example", 8443)
    assert dest.host_header == "shop.example:8443"
    assert dest.resolved_at.tzinfo is not None
    assert dest.as_evidence()["addresses"] == ["93.184.216.34", "1.1.1.1"]


def test_one_private_answer_among_public_ones_refuses() -> None:
    """DNS answers chosen by the site's owner: a single internal address is enough to refuse."""
    with pytest.raises(UnsafeDestinationError, match=r"10\.1\.2\.3"):
        check_url("http://mixed.example/", resolver=fixed({"mixed.example": ["93.184.216.34", "10.1.2.3"]}))


def test_allowlist_admits_only_its_networks() -> None:
    allow = frozenset({ip_network("127.0.0.1/32"), ip_network("10.20.0.0/16")})
    assert check_url("https://127.0.0.1:8443/", allow).addresses == ("127.0.0.1",)
    assert check_url("http://intranet.example/", allow,
                     resolver=fixed({"intranet.example": ["10.20.3.4"]})).pinned == "10.20.3.4"
    assert check_address("::ffff:127.0.0.1", allow) == "::ffff:7f00:1"  # mapped form of an allowed address
    with pytest.raises(UnsafeDestinationError, match=r"127\.0\.0\.2.*allowlist \['10\.20\.0\.0/16', '127\.0\.0\.1/32'\]"):
        check_url("https://127.0.0.2/", allow)
    with pytest.raises(UnsafeDestinationError, match=r"::1"):
        check_url("http://[::1]:8080/", allow)


def test_ip_literals_are_not_resolved() -> None:
    def boom(host: str, port: int) -> list[str]:
        raise AssertionError("resolver called for an IP literal")

    assert check_url("http://93.184.216.34/", resolver=boom).addresses == ("93.184.216.34",)
    dest = check_url("https://[2606:2800:220:1:248:1893:25c8:1946]/", resolver=boom)
    assert dest.host == "2606:2800:220:1:248:1893:25c8:1946"
    assert dest.host_header == "[2606:2800:220:1:248:1893:25c8:1946]"
    with pytest.raises(UnsafeDestinationError):
        check_url("http://[::ffff:7f00:1]/", resolver=boom)


def test_numeric_host_spellings_resolve_to_what_they_mean() -> None:
    """'2130706433' and '0x7f.1' are 127.0.0.1 to getaddrinfo: checked on the resolved address."""
    for host in ("2130706433", "0x7f.1", "017700000001"):
        with pytest.raises(UnsafeDestinationError, match=r"127\.0\.0\.1"):
            check_url(f"http://{host}/")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "javascript:alert(1)",
                                 "data:text/html,hi", "gopher://example.com/", "example.com/no-scheme", "",
                                 "http://", "https://:443/"])
def test_only_http_and_https_urls(url: str) -> None:
    with pytest.raises(UnsupportedContentError) as ei:
        check_url(url, resolver=fixed({}))
    assert "URL" in str(ei.value) or "scheme" in str(ei.value)


def test_credentials_and_bad_ports_are_refused() -> None:
    with pytest.raises(UnsupportedContentError, match="credentials"):
        check_url("https://user:pw@shop.example/", resolver=fixed({"shop.example": PUBLIC[:1]}))
    with pytest.raises(UnsupportedContentError, match="malformed"):
        check_url("https://shop.example:99999/", resolver=fixed({"shop.example": PUBLIC[:1]}))


def test_internationalised_names_are_resolved_in_ascii() -> None:
    calls: list = []
    dest = check_url("https://bücher.example/", resolver=fixed({"xn--bcher-kva.example": PUBLIC[:1]}, calls))
    assert calls == [("xn--bcher-kva.example", 443)] and dest.host == "xn--bcher-kva.example"


def test_empty_answer_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="did not resolve"):
        check_url("https://void.example/", resolver=fixed({"void.example": []}))


def test_resolver_returning_garbage_is_refused() -> None:
    with pytest.raises(UnsafeDestinationError, match="not an IP address"):
        check_url("https://odd.example/", resolver=fixed({"odd.example": ["localhost"]}))


def test_redirect_hops_are_checked_like_urls() -> None:
    r = fixed({"shop.example": PUBLIC[:1], "cdn.example": ["1.1.1.1"], "evil.example": ["192.168.0.10"]})
    assert check_redirect("https://shop.example/a/b", "../c?x=1", resolver=r).url == "https://shop.example/c?x=1"
    assert check_redirect("https://shop.example/a", "//cdn.example/img", resolver=r).host == "cdn.example"
    with pytest.raises(UnsafeDestinationError, match=r"evil\.example.*192\.168\.0\.10"):
        check_redirect("https://shop.example/a", "https://evil.example/", resolver=r)
    with pytest.raises(UnsafeDestinationError, match=r"169\.254\.169\.254"):
        check_redirect("https://shop.example/a", "http://169.254.169.254/latest/meta-data/", resolver=r)
    with pytest.raises(UnsupportedContentError, match="file"):
        check_redirect("https://shop.example/a", "file:///etc/shadow", resolver=r)
    with pytest.raises(FetchError, match="no Location"):
        check_redirect("https://shop.example/a", "", resolver=r)


def test_system_resolver_reads_localhost_without_network() -> None:
    addrs = netguard.system_resolver("localhost", 80)
    assert addrs and all(forbidden_reason(a) == "loopback" for a in addrs)
    with pytest.raises(UnsafeDestinationError, match="localhost"):
        check_url("http://localhost:8080/")


def test_connect_pinned_connects_only_to_checked_addresses() -> None:
    with contextlib.closing(socket.socket()) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        dest = check_url(f"http://pinned.example:{port}/", frozenset({ip_network("127.0.0.1/32")}),
                         resolver=fixed({"pinned.example": ["127.0.0.1"]}))
        with contextlib.closing(netguard.connect_pinned(dest, 2.0)) as s:
            assert s.getpeername() == ("127.0.0.1", port)
        with pytest.raises(UnsafeDestinationError, match="not among the checked"):
            netguard.connect_pinned(dest, 2.0, address="127.0.0.2")
    with pytest.raises(FetchError, match=rf"127\.0\.0\.1:{port}"):
        netguard.connect_pinned(dest, 2.0)  # the listener is gone: refused
