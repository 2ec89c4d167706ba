"""HTTP Message Signatures (RFC 9421) on responses, SM2 + Content-Digest sm3."""

import base64
import shutil
import subprocess

import pytest

from keys import rfc8941, sm2
from keys.errors import SignatureError
from keys.rfc9421 import sign_response, signature_base, signed_response, verify_response

BODY = '{"data":{"regions":[{"code":"110000","name":"北京市"}]}}'.encode()
HEADERS = {"Content-Type": "application/json", "X-Request-Id": "req-7f3a"}
COMPONENTS = ("@status", "content-digest", "content-type", "x-request-id")
NOW = 1_700_000_000


@pytest.fixture(scope="module")
def key():
    return sm2.generate_private_key()


@pytest.fixture(scope="module")
def signed(key):
    added = sign_response(key, "kid-1", 200, HEADERS, BODY, components=COMPONENTS, created=NOW)
    return {**HEADERS, **added}


def lookup(key):
    return lambda kid: key.public_key if kid == "kid-1" else None


def test_rfc9421_appendix_b24_base_layout():
    # Structure of RFC 9421 B.2.4 (response, ECDSA example): the base is independent of the algorithm.
    digest = (
        "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:"
    )
    headers = {"Content-Type": "application/json", "Content-Digest": digest, "Content-Length": " 23 "}
    base = signature_base(
        200,
        headers,
        ["@status", "content-type", "content-digest", "content-length"],
        {"created": 1618884473, "keyid": "test-key-ecc-p256"},
    )
    assert base.decode() == (
        '"@status": 200\n'
        '"content-type": application/json\n'
        f'"content-digest": {digest}\n'
        '"content-length": 23\n'
        '"@signature-params": ("@status" "content-type" "content-digest" "content-length")'
        ';created=1618884473;keyid="test-key-ecc-p256"'
    )


def test_headers_shape(signed):
    assert signed["Signature-Input"] == (
        'sig1=("@status" "content-digest" "content-type" "x-request-id");created=1700000000;keyid="kid-1"'
    )
    assert signed["Signature"].startswith("sig1=:") and signed["Signature"].endswith(":")
    assert signed["Content-Digest"].startswith("sm3=:")


def test_round_trip(key, signed):
    result = verify_response(200, signed, BODY, lookup(key), now=NOW + 5, max_age=300)
    assert (result.label, result.keyid, result.created) == ("sig1", "kid-1", NOW)
    assert result.components == COMPONENTS


def test_header_names_are_case_insensitive(key, signed):
    lowered = {k.lower(): v for k, v in signed.items()}
    verify_response(200, lowered, BODY, lookup(key), now=NOW)


def check_fails(key, headers, body=BODY, status=200, match="", **kw):
    kw.setdefault("now", NOW)
    with pytest.raises(SignatureError, match=match):
        verify_response(status, headers, body, lookup(key), **kw)


def test_changed_body_byte(key, signed):
    check_fails(key, signed, body=BODY[:-2] + b"]}", match="Content-Digest does not match")


def test_changed_status(key, signed):
    check_fails(key, signed, status=203, match="SM2 signature does not match")


def test_changed_header_value(key, signed):
    check_fails(key, {**signed, "X-Request-Id": "req-other"}, match="SM2 signature does not match")


def test_changed_created(key, signed):
    tampered = signed["Signature-Input"].replace(f"created={NOW}", f"created={NOW + 1}")
    check_fails(key, {**signed, "Signature-Input": tampered}, match="SM2 signature does not match")


def test_changed_digest_and_body_together(key, signed):
    from keys.rfc9530 import content_digest

    other = b'{"data":null}'
    check_fails(key, {**signed, "Content-Digest": content_digest(other)}, body=other, match="SM2 signature")


def test_changed_signature_byte(key, signed):
    label, value = signed["Signature"].split("=", 1)
    der = bytearray(base64.b64decode(value.strip(":")))
    der[-1] ^= 1
    check_fails(key, {**signed, "Signature": f"{label}=:{base64.b64encode(der).decode()}:"}, match="SM2")


def test_unknown_keyid(key, signed):
    tampered = signed["Signature-Input"].replace('keyid="kid-1"', 'keyid="kid-2"')
    check_fails(key, {**signed, "Signature-Input": tampered}, match="unknown keyid 'kid-2'")


def test_expired_by_max_age(key, signed):
    check_fails(key, signed, now=NOW + 301, max_age=300, match="older than max_age")


def test_created_in_future(key, signed):
    check_fails(key, signed, now=NOW - 3600, match="in the future")


def test_expires_parameter(key):
    added = sign_response(key, "kid-1", 200, HEADERS, BODY, created=NOW, expires=NOW + 10)
    headers = {**HEADERS, **added}
    assert verify_response(200, headers, BODY, lookup(key), now=NOW + 9).expires == NOW + 10
    check_fails(key, headers, now=NOW + 10, match="expires")


def test_missing_required_component(key):
    added = sign_response(
        key, "kid-1", 200, HEADERS, BODY, components=("@status", "x-request-id"), created=NOW
    )
    check_fails(key, {**HEADERS, **added}, match="required component.*content-digest")


def test_missing_covered_header(key, signed):
    headers = {k: v for k, v in signed.items() if k != "X-Request-Id"}
    check_fails(key, headers, match="'x-request-id' is missing")


@pytest.mark.parametrize(
    ("signature_input", "match"),
    [
        ('sig1=("@status" "content-digest");created=1;keyid="k";alg="sm2"', "alg parameter"),
        ('sig1=("@status" "content-digest");keyid="k"', "created"),
        ('sig1=("@status" "content-digest");created=1', "keyid"),
        ('sig1=("@status" "content-digest");created=1;keyid=k', "keyid"),
        ('sig1=("@status" "content-digest");created=1;keyid="k";foo=1', "unknown signature parameter"),
        ('sig1=(@status "content-digest");created=1;keyid="k"', "does not parse"),
        ('sig1=("@status";req "content-digest");created=1;keyid="k"', "without parameters"),
        ('sig1=("@status" "content-digest" "@status");created=1;keyid="k"', "more than once"),
        ('sig1=("@method" "content-digest");created=1;keyid="k"', "not supported on responses"),
        ('sig1=("Content-Digest");created=1;keyid="k"', "lower-case"),
        ('sig1="@status"', "inner list"),
        ('sig2=("@status");created=1;keyid="k"', "no signature labelled 'sig2'"),
    ],
)
def test_strict_parsing(key, signed, signature_input, match):
    check_fails(key, {**signed, "Signature-Input": signature_input}, match=match)


def test_multiple_signatures_need_a_label(key, signed):
    headers = {
        **signed,
        "Signature-Input": signed["Signature-Input"] + ', proxy=("@status");created=1;keyid="p"',
        "Signature": signed["Signature"] + ", proxy=:AAAA:",
    }
    check_fails(key, headers, match="2 signatures")
    assert verify_response(200, headers, BODY, lookup(key), now=NOW, label="sig1").label == "sig1"


def test_signer_refuses_a_stale_content_digest(key):
    from keys.rfc9530 import content_digest

    with pytest.raises(SignatureError, match="does not match the body being signed"):
        sign_response(key, "kid-1", 200, {**HEADERS, "Content-Digest": content_digest(b"x")}, BODY)


def test_signature_member_is_a_byte_sequence(signed):
    parsed = rfc8941.parse_dictionary(signed["Signature"])
    assert isinstance(parsed["sig1"].value, bytes)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_verifies_our_response_signature(key, signed, tmp_path):
    # Exactly the README recipe: an independent SM2 verifier over the signature base.
    response = signed_response(200, signed)
    (tmp_path / "pub.pem").write_text(key.public_key.to_pem())
    (tmp_path / "base.txt").write_bytes(response.base)
    (tmp_path / "sig.der").write_bytes(response.signature)
    cmd = ["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"]
    cmd += ["-pubin", "-inkey", "pub.pem", "-in", "base.txt", "-sigfile", "sig.der"]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stderr
    (tmp_path / "base.txt").write_bytes(response.base.replace(b": 200", b": 201"))
    bad = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode != 0
