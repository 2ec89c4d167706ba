"""SM2 (GB/T 32918, GM/T 0009): both backends, each against the other."""

import base64
import itertools
import sys

import pytest

from keys import sm2
from keys.errors import CryptoError, DecryptionError, InvalidKeyError, SignatureError
from keys.sm2 import der, gbt32918, gmt0009

BACKENDS = sm2.available_backends()
PAIRS = list(itertools.product(BACKENDS, repeat=2))

# GM/T 0003.5-2012 worked example on the recommended curve
KAT_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
KAT_SIG = gmt0009.encode_signature(
    0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3,
    0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA,
)
KAT_CIPHERTEXT = bytes.fromhex(  # C1 ‖ C3 ‖ C2 of "encryption standard"
    "04"
    "04ebfc718e8d1798620432268e77feb6415e2ede0e073c0f4f640ecd2e149a73"
    "e858f9d81e5430a57b36daab8f950a3c64e6ee6a63094d99283aff767e124df0"
    "59983c18f809e262923c53aec295d30383b54e39d609d160afcb1908d0bd8766"
    "21886ca989ca9c7d58087307ca93092d651efa"
)


def test_expected_backends_are_installed():
    # pyproject installs tongsuopy on Linux: a missing wheel must not silently halve coverage.
    expected = ("tongsuo", "gmssl") if sys.platform == "linux" else ("gmssl",)
    assert expected == BACKENDS


@pytest.fixture(scope="module")
def keypair():
    return sm2.generate_private_key()


@pytest.mark.parametrize("name", BACKENDS)
def test_known_answer(name):
    be = sm2.backend(name)
    key = sm2.SM2PrivateKey(KAT_D, sm2.SM2PublicKey(*be.public_point(KAT_D)))
    assert key.public_key.x == 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
    assert sm2.verify(key.public_key, b"message digest", KAT_SIG, backend=be)
    assert sm2.decrypt(key, KAT_CIPHERTEXT, backend=be) == b"encryption standard"


@pytest.mark.parametrize(("signer", "verifier"), PAIRS)
def test_sign_verify_cross_backend(signer, verifier):
    key = sm2.generate_private_key(backend=sm2.backend(signer))
    sig = sm2.sign(key, "数桥 response".encode(), backend=sm2.backend(signer))
    gmt0009.decode_signature(sig)  # canonical DER
    assert sm2.verify(key.public_key, "数桥 response".encode(), sig, backend=sm2.backend(verifier))


@pytest.mark.parametrize(("signer", "verifier"), PAIRS)
def test_custom_signer_id(signer, verifier):
    key = sm2.generate_private_key()
    sig = sm2.sign(key, b"m", uid=b"alice@shuqiao", backend=sm2.backend(signer))
    be = sm2.backend(verifier)
    assert sm2.verify(key.public_key, b"m", sig, uid=b"alice@shuqiao", backend=be)
    assert not sm2.verify(key.public_key, b"m", sig, backend=be)  # default ID differs


@pytest.mark.parametrize("name", BACKENDS)
def test_tampering_makes_verify_false(name, keypair):
    be = sm2.backend(name)
    pub = keypair.public_key
    sig = sm2.sign(keypair, b"message", backend=be)
    r, s = gmt0009.decode_signature(sig)
    other = sm2.generate_private_key().public_key
    bad = [
        (pub, b"messagE", sig),
        (pub, b"message ", sig),
        (other, b"message", sig),
        (pub, b"message", gmt0009.encode_signature(r, (s + 1) % gbt32918.N)),
        (pub, b"message", gmt0009.encode_signature((r + 1) % gbt32918.N, s)),
        (pub, b"message", gmt0009.encode_signature(s, r)),
        (pub, b"message", sig[:-1]),
        (pub, b"message", sig + b"\x00"),
        (pub, b"message", b""),
        (pub, b"message", b"\x30\x00"),
        (pub, b"message", gmt0009.encode_signature(r, gbt32918.N)),  # s out of range
        (pub, b"message", gmt0009.encode_signature(r, gbt32918.N + s)),
        (pub, b"message", der.sequence(der.integer(r), der.integer(s), der.integer(1))),
    ]
    for i in range(len(sig)):
        flipped = bytearray(sig)
        flipped[i] ^= 0x40
        bad.append((pub, b"message", bytes(flipped)))
    for key, msg, signature in bad:
        assert sm2.verify(key, msg, signature, backend=be) is False
    assert sm2.verify(pub, b"message", sig, backend=be) is True


@pytest.mark.parametrize("name", BACKENDS)
def test_non_canonical_der_rejected(name, keypair):
    sig = sm2.sign(keypair, b"m")
    r, s = gmt0009.decode_signature(sig)
    padded = der.tlv(der.INTEGER, b"\x00" + der.integer(r)[2:])  # extra leading zero
    long_len = b"\x30\x81" + bytes([len(sig) - 2]) + sig[2:]  # non-minimal length
    be = sm2.backend(name)
    for variant in (der.sequence(padded, der.integer(s)), long_len):
        assert not sm2.verify(keypair.public_key, b"m", variant, backend=be)


def test_check_signature_raises(keypair):
    sig = sm2.sign(keypair, b"m")
    sm2.check_signature(keypair.public_key, b"m", sig)
    with pytest.raises(SignatureError):
        sm2.check_signature(keypair.public_key, b"n", sig)


@pytest.mark.parametrize(("encryptor", "decryptor"), PAIRS)
@pytest.mark.parametrize("encoding", ["der", "c1c3c2"])
def test_encrypt_decrypt_cross_backend(encryptor, decryptor, encoding):
    key = sm2.generate_private_key()
    for message in (b"k", bytes(range(16)), "敏感个人信息".encode() * 20):
        ct = sm2.encrypt(key.public_key, message, encoding=encoding, backend=sm2.backend(encryptor))
        assert ct[0] == (0x30 if encoding == "der" else 0x04)
        assert sm2.decrypt(key, ct, backend=sm2.backend(decryptor)) == message


@pytest.mark.parametrize("name", BACKENDS)
def test_ciphertext_layouts(name, keypair):
    be = sm2.backend(name)
    raw = sm2.encrypt(keypair.public_key, b"abc", encoding="c1c3c2", backend=be)
    assert len(raw) == 65 + 32 + 3
    x1, y1, c3, c2 = gbt32918.split_c1c3c2(raw)
    assert gmt0009.decode_ciphertext(gmt0009.encode_ciphertext(x1, y1, c3, c2)) == (x1, y1, c3, c2)
    legacy = gbt32918.c1c3c2_to_c1c2c3(raw)
    assert gbt32918.c1c2c3_to_c1c3c2(legacy) == raw
    # The interop trap: legacy order fed in as-is must fail, not return garbage.
    with pytest.raises(DecryptionError):
        sm2.decrypt(keypair, legacy, backend=be)
    assert sm2.decrypt(keypair, gbt32918.c1c2c3_to_c1c3c2(legacy), backend=be) == b"abc"


@pytest.mark.parametrize("name", BACKENDS)
def test_decrypt_rejects_tampering_and_wrong_key(name, keypair):
    be = sm2.backend(name)
    for encoding in ("der", "c1c3c2"):
        ct = sm2.encrypt(keypair.public_key, b"secret message", encoding=encoding, backend=be)
        with pytest.raises(DecryptionError):
            sm2.decrypt(sm2.generate_private_key(), ct, backend=be)
        for i in range(0, len(ct), 3):
            flipped = bytearray(ct)
            flipped[i] ^= 0x01
            with pytest.raises(DecryptionError):
                sm2.decrypt(keypair, bytes(flipped), backend=be)
        for cut in (1, 14, len(ct) - 1):
            with pytest.raises(DecryptionError):
                sm2.decrypt(keypair, ct[:-cut], backend=be)
        with pytest.raises(DecryptionError):
            sm2.decrypt(keypair, ct + b"\x00", backend=be)


@pytest.mark.parametrize("name", BACKENDS)
def test_decrypt_rejects_c1_off_curve(name, keypair):
    ct = sm2.encrypt(keypair.public_key, b"secret", encoding="c1c3c2")
    x1, y1, c3, c2 = gbt32918.split_c1c3c2(ct)
    for forged in (gbt32918.join_c1c3c2(x1, y1 ^ 1, c3, c2), gmt0009.encode_ciphertext(1, 1, c3, c2)):
        with pytest.raises(DecryptionError):
            sm2.decrypt(keypair, forged, backend=sm2.backend(name))


def test_encrypt_refuses_empty_and_unknown_encoding(keypair):
    with pytest.raises(ValueError):
        sm2.encrypt(keypair.public_key, b"")
    with pytest.raises(ValueError):
        sm2.encrypt(keypair.public_key, b"x", encoding="c1c2c3")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BACKENDS)
def test_pem_round_trip(name):
    be = sm2.backend(name)
    key = sm2.generate_private_key(backend=be)
    pem = key.to_pem()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    again = sm2.load_pem_private_key(pem, backend=be)
    assert again.private_value == key.private_value and again.public_key == key.public_key
    assert sm2.load_pem_private_key(key.to_der(), backend=be).public_key == key.public_key
    pub_pem = key.public_key.to_pem()
    assert pub_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert sm2.load_pem_public_key(pub_pem) == key.public_key
    assert sm2.load_pem_public_key(pub_pem.encode()) == key.public_key
    assert sm2.load_pem_public_key(key.public_key.to_der()) == key.public_key
    assert sm2.load_pem_public_key(key.public_key.to_bytes()) == key.public_key


def test_pem_strings_accepted_by_operations(keypair):
    sig = sm2.sign(keypair.to_pem(), b"m")
    assert sm2.verify(keypair.public_key.to_pem(), b"m", sig)
    ct = sm2.encrypt(keypair.public_key.to_pem().encode(), b"m")
    assert sm2.decrypt(keypair.to_pem().encode(), ct) == b"m"


def test_compressed_point(keypair):
    pub = keypair.public_key
    compressed = bytes([2 + (pub.y & 1)]) + pub.x.to_bytes(32, "big")
    assert sm2.SM2PublicKey.from_bytes(compressed) == pub


def test_sec1_private_key_accepted(keypair):
    d = keypair.private_value.to_bytes(32, "big")
    sec1 = der.sequence(
        der.integer(1),
        der.octet_string(d),
        der.tlv(0xA0, bytes.fromhex("06082a811ccf5501822d")),
    )
    pem = (
        "-----BEGIN EC PRIVATE KEY-----\n"
        + base64.b64encode(sec1).decode()
        + "\n-----END EC PRIVATE KEY-----\n"
    )
    assert sm2.load_pem_private_key(pem).public_key == keypair.public_key


def test_bad_keys_rejected(keypair):
    other = sm2.generate_private_key()
    # private key whose embedded public key belongs to someone else
    mismatched = sm2.SM2PrivateKey(keypair.private_value, other.public_key).to_pem()
    with pytest.raises(InvalidKeyError):
        sm2.load_pem_private_key(mismatched)
    with pytest.raises(InvalidKeyError):
        sm2.load_pem_private_key(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        )
    with pytest.raises(InvalidKeyError):
        sm2.load_pem_private_key(keypair.public_key.to_pem())
    with pytest.raises(InvalidKeyError):
        sm2.load_pem_public_key(keypair.to_pem())
    with pytest.raises(InvalidKeyError):
        sm2.SM2PublicKey(keypair.public_key.x, keypair.public_key.y + 1)
    with pytest.raises(InvalidKeyError):
        sm2.SM2PrivateKey(gbt32918.N - 1, keypair.public_key)
    with pytest.raises(InvalidKeyError):
        sm2.SM2PrivateKey(0, keypair.public_key)
    # a P-256 SubjectPublicKeyInfo is not an SM2 key
    p256 = der.sequence(
        der.sequence(
            der.tlv(der.OID, bytes.fromhex("2a8648ce3d0201")),
            der.tlv(der.OID, bytes.fromhex("2a8648ce3d030107")),
        ),
        der.bit_string(keypair.public_key.to_bytes()),
    )
    with pytest.raises(InvalidKeyError):
        sm2.load_pem_public_key(p256)


def test_private_key_never_printed(keypair):
    d_hex = f"{keypair.private_value:x}"
    assert d_hex not in repr(keypair) and str(keypair.private_value) not in repr(keypair)
    with pytest.raises(CryptoError) as info:
        sm2.decrypt(keypair, b"\x30\x03\x02\x01\x01")
    assert d_hex not in str(info.value)


def test_backend_selection(monkeypatch):
    monkeypatch.delenv(sm2.ENV_VAR, raising=False)
    assert sm2.backend().name == BACKENDS[0]
    for name in BACKENDS:
        monkeypatch.setenv(sm2.ENV_VAR, name)
        assert sm2.backend().name == name
        assert isinstance(sm2.backend(), sm2.Sm2Backend)
    monkeypatch.setenv(sm2.ENV_VAR, "nonsense")
    with pytest.raises(CryptoError):
        sm2.backend()
    assert sm2.backend("gmssl").name == "gmssl"  # an explicit name beats the environment


def test_env_forced_backend_is_used_by_operations(monkeypatch, keypair):
    calls = []
    gm = sm2.backend("gmssl")
    original = type(gm).sign

    def spy(self, key, digest):
        calls.append(self.name)
        return original(self, key, digest)

    monkeypatch.setattr(type(gm), "sign", spy)
    monkeypatch.setenv(sm2.ENV_VAR, "gmssl")
    assert sm2.verify(keypair.public_key, b"m", sm2.sign(keypair, b"m"))
    assert calls == ["gmssl"]


def test_falls_back_to_gmssl_without_tongsuopy(monkeypatch):
    from keys.sm2 import backends as backend_module

    monkeypatch.setattr(backend_module, "_instances", {})
    for name in [m for m in sys.modules if m.split(".")[0] == "tongsuopy"] + ["tongsuopy"]:
        monkeypatch.setitem(sys.modules, name, None)  # None makes the import raise ImportError
    monkeypatch.delitem(sys.modules, "keys.sm2.tongsuo_backend", raising=False)
    monkeypatch.delenv(sm2.ENV_VAR, raising=False)
    assert sm2.backend().name == "gmssl"
    assert sm2.available_backends() == ("gmssl",)
    monkeypatch.setenv(sm2.ENV_VAR, "tongsuo")
    with pytest.raises(CryptoError, match="not installed"):
        sm2.backend()
