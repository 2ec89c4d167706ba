"""Only normalised IP addresses reach the audit log and the rate limits; X-Forwarded-For counts only
when a configured proxy sends it, and then only its right-most hop that is not one of ours."""

from __future__ import annotations

import pytest

from gateway.client_address import forwarded_address, normalise_address, parse_proxies
from gateway.settings import Settings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (" 10.0.0.1 ", "10.0.0.1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        (None, None),
    ],
)
def test_addresses_are_normalised(raw: str | None, expected: str | None) -> None:
    assert normalise_address(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["<img src=x onerror=alert(1)>", '=HYPERLINK("http://x")', "", "10.0.0.1.5", "unknown", "10.0.0.1;drop"],
)
def test_anything_else_is_a_digest_not_the_text(raw: str) -> None:
    got = normalise_address(raw)
    assert got is not None and got.startswith("invalid:") and len(got) == len("invalid:") + 16
    assert got[len("invalid:") :].isalnum() and (raw == "" or raw not in got)
    assert normalise_address(raw) == got and normalise_address(raw + "x") != got  # stable, distinct


# ---------------------------------------------------------------- X-Forwarded-For, from trusted proxies only

PROXIES = parse_proxies("10.0.0.1, 10.1.0.0/16")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a proxy of ours: its header is ignored
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),  # our proxy says who called
        ("10.0.0.1", [], "10.0.0.1"),  # our proxy, no header: the proxy itself
        ("10.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the caller wrote 6.6.6.6 itself
        ("10.0.0.1", ["198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # through two proxies of ours
        ("10.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # repeated headers read in order
        ("10.0.0.1", ["10.1.0.5, 10.1.0.6"], "10.1.0.5"),  # every hop ours: the first one saw the caller
        ("10.1.9.9", ["2001:DB8::1"], "2001:db8::1"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert forwarded_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxies_by_default() -> None:
    assert Settings().trusted_proxies == ()
    assert forwarded_address("127.0.0.1", ["198.51.100.1"], parse_proxies(())) == "127.0.0.1"


def test_a_forged_hop_is_a_digest() -> None:
    got = forwarded_address("10.0.0.1", ["<script>"], PROXIES)
    assert got is not None and got.startswith("invalid:")


def test_a_malformed_proxy_setting_is_an_error() -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        parse_proxies("10.0.0.1, proxy.example")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHUQIAO_TRUSTED_PROXIES", "10.0.0.1, 10.1.0.0/16 ,")
    monkeypatch.setenv("SHUQIAO_AUTH_FAILURE_RATE", "5/minute")
    s = Settings.from_env()
    assert (s.trusted_proxies, s.auth_failure_rate) == (("10.0.0.1", "10.1.0.0/16"), "5/minute")
