"""SM4 (GB/T 32907-2016) and SM4-GCM."""

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keys import sm4
from keys.errors import CryptoError, DecryptionError, InvalidKeyError

KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def test_sm4_block_vector_ecb():
    # GB/T 32907-2016 appendix A example 1: key = plaintext; ECB only for this vector
    enc = Cipher(algorithms.SM4(KEY), modes.ECB()).encryptor()
    assert (enc.update(KEY) + enc.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_gcm_rfc8998_vector():
    # RFC 8998 appendix A.1, through unseal (seal picks its own nonce)
    nonce = bytes.fromhex("00001234567800000000abcd")
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    pt = bytes.fromhex(
        "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd"
        "eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa"
    )
    ct = bytes.fromhex(
        "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735"
        "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
    )
    tag = bytes.fromhex("83de3541e4c2b58177e065a9bf7b62ec")
    assert sm4.unseal(KEY, nonce, ct, tag, aad) == pt
    assert sm4.decrypt(KEY, nonce + ct + tag, aad) == pt


@pytest.mark.parametrize("plaintext", [b"", b"x", b"\x00" * 15, "身份证号 610113".encode() * 100])
def test_seal_round_trip(plaintext):
    key = sm4.generate_key()
    nonce, ct, tag = sm4.seal(key, plaintext, b"aad")
    assert len(nonce) == 12 and len(tag) == 16 and len(ct) == len(plaintext)
    assert sm4.unseal(key, nonce, ct, tag, b"aad") == plaintext


def test_compact_round_trip_and_layout():
    key = sm4.generate_key()
    blob = sm4.encrypt(key, b"secret", b"ctx")
    assert len(blob) == len(b"secret") + sm4.OVERHEAD
    assert sm4.decrypt(key, blob, b"ctx") == b"secret"


def test_nonces_are_fresh():
    key = sm4.generate_key()
    assert len({sm4.encrypt(key, b"same")[:12] for _ in range(50)}) == 50


def _flip(data: bytes, index: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("part", ["ciphertext", "tag", "nonce", "aad", "key"])
def test_unseal_rejects_any_change(part):
    key = sm4.generate_key()
    args = dict(zip(("nonce", "ciphertext", "tag"), sm4.seal(key, b"payload", b"aad"), strict=True))
    args["aad"] = b"aad"
    args["key"] = key
    args[part] = _flip(args[part])
    with pytest.raises(DecryptionError):
        sm4.unseal(args["key"], args["nonce"], args["ciphertext"], args["tag"], args["aad"])


@pytest.mark.parametrize("index", [0, 12, -1])  # nonce, ciphertext, tag byte
def test_decrypt_rejects_changed_byte(index):
    key = sm4.generate_key()
    blob = sm4.encrypt(key, b"payload")
    with pytest.raises(DecryptionError):
        sm4.decrypt(key, _flip(blob, index))


def test_decrypt_rejects_wrong_key_missing_aad_and_truncation():
    key = sm4.generate_key()
    blob = sm4.encrypt(key, b"payload", b"aad")
    with pytest.raises(DecryptionError):
        sm4.decrypt(sm4.generate_key(), blob, b"aad")
    with pytest.raises(DecryptionError):
        sm4.decrypt(key, blob)
    for cut in (1, 8, len(blob) - 27):
        with pytest.raises(DecryptionError):
            sm4.decrypt(key, blob[:-cut], b"aad")


def test_truncated_tag_is_refused_even_if_gcm_would_accept_it():
    key = sm4.generate_key()
    nonce, ct, tag = sm4.seal(key, b"payload")
    with pytest.raises(DecryptionError):
        sm4.unseal(key, nonce, ct, tag[:12])


def test_bad_key_size():
    with pytest.raises(InvalidKeyError):
        sm4.encrypt(b"short", b"x")
    with pytest.raises(InvalidKeyError):
        sm4.decrypt(b"k" * 32, b"\0" * 40)


def test_errors_do_not_leak_material():
    key = bytes(range(16))
    blob = sm4.encrypt(key, b"TOPSECRET")
    try:
        sm4.decrypt(key, _flip(blob, 20))
    except CryptoError as exc:
        text = str(exc) + repr(exc)
    assert "TOPSECRET" not in text and key.hex() not in text and blob.hex()[:16] not in text
