"""Only normalised IP addresses reach the audit log and the rate limits; forwarded text does not."""

from __future__ import annotations

import pytest

from gateway.client_address import normalise_address


@pytest.mark.parametrize(("raw", "expected"), [
    ("10.0.0.1", "10.0.0.1"),
    (" 10.0.0.1 ", "10.0.0.1"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
    (None, None),
])
def test_addresses_are_normalised(raw: str | None, expected: str | None) -> None:
    assert normalise_address(raw) == expected


@pytest.mark.parametrize("raw", ["<img src=x onerror=alert(1)>", "=HYPERLINK(\"http://x\")", "", "10.0.0.1.5",
                                 "unknown", "10.0.0.1;drop"])
def test_anything_else_is_a_digest_not_the_text(raw: str) -> None:
    got = normalise_address(raw)
    assert got is not None and got.startswith("invalid:") and len(got) == len("invalid:") + 16
    assert got[len("invalid:"):].isalnum() and (raw == "" or raw not in got)
    assert normalise_address(raw) == got and normalise_address(raw + "x") != got  # stable, distinct
