"""Content-Digest with SM3 (RFC 9530) and the RFC 8941 parser under it."""

import base64
import hashlib

import pytest

from keys import rfc8941
from keys.rfc9530 import content_digest, verify_content_digest
from keys.sm3 import sm3

BODY = '{"data":{"regions":[{"code":"110000","name":"北京市"}]}}'.encode()


def test_form_is_sf_dictionary_with_byte_sequence():
    header = content_digest(BODY)
    assert header == "sm3=:" + base64.b64encode(sm3(BODY)).decode() + ":"
    assert verify_content_digest(header, BODY)


def test_empty_body_has_a_digest():
    assert verify_content_digest(content_digest(b""), b"")


def test_changed_body_byte_fails():
    header = content_digest(BODY)
    assert not verify_content_digest(header, BODY[:-1] + b"!")


def test_unknown_algorithms_are_ignored_not_trusted():
    sm3_member = content_digest(BODY)
    assert verify_content_digest(f"sha-256=:AAAA:, {sm3_member}", BODY)
    assert verify_content_digest(f"{sm3_member}, sha-512=:AAAA:;x=1", BODY)
    sha = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    assert not verify_content_digest(f"sha-256=:{sha}:", BODY)  # no sm3 member


@pytest.mark.parametrize(
    "header",
    [
        "",
        "sm3",
        "sm3=?1",
        'sm3="abc"',
        "sm3=:not base64!:",
        "sm3=:",
        "sm3=:AAAA:,",
        "SM3=:AAAA:",
        "sm3=(:AAAA:)",
    ],
)
def test_malformed_or_wrong_type_is_false(header):
    assert not verify_content_digest(header, BODY)


def test_parser_inner_list_and_params():
    d = rfc8941.parse_dictionary('sig1=("@status" "content-digest");created=1618884473;keyid="k-1", b=?0')
    sig = d["sig1"]
    assert isinstance(sig, rfc8941.InnerList)
    assert [i.value for i in sig.items] == ["@status", "content-digest"]
    assert sig.params == {"created": 1618884473, "keyid": "k-1"}
    assert d["b"].value is False
    assert rfc8941.serialize_dictionary({"sig1": sig}) == (
        'sig1=("@status" "content-digest");created=1618884473;keyid="k-1"'
    )


@pytest.mark.parametrize(
    "text",
    ['a=("x"', 'a=("x""y")', "a=1.5", "a=1234567890123456", 'a="\\n"', "a=?2", "A=1", "a=1 b=2", "a=é"],
)
def test_parser_rejects(text):
    with pytest.raises(ValueError, match="structured field"):
        rfc8941.parse_dictionary(text)


def test_serialize_escapes_and_tokens():
    assert rfc8941.serialize_bare_item('a"b\\c') == '"a\\"b\\\\c"'
    assert rfc8941.serialize_bare_item(rfc8941.Token("sm2")) == "sm2"
    with pytest.raises(ValueError):
        rfc8941.serialize_bare_item("中")
