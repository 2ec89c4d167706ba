"""SM2 interop with the OpenSSL 3 command line, both directions.

OpenSSL 3.0 signs SM2 with an *empty* signer ID unless told otherwise, so every
sign/verify below passes ``-pkeyopt distid:1234567812345678`` (the GM/T 0009
default that Shuqiao uses); ``test_openssl_without_distid_is_a_different_z``
pins down that trap. ``pkeyutl -encrypt`` emits the GM/T 0009 DER SM2Cipher.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from keys import sm2

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")

BACKENDS = sm2.available_backends()
DISTID = ["-pkeyopt", "distid:1234567812345678"]
MESSAGE = "数桥 /share/graphql response body".encode()


def openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)


@pytest.fixture(scope="module")
def openssl_key(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sm2")
    key, pub = d / "key.pem", d / "pub.pem"
    assert openssl("genpkey", "-algorithm", "SM2", "-out", str(key)).returncode == 0
    assert openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub)).returncode == 0
    return key, pub


@pytest.fixture
def message_file(tmp_path) -> Path:
    path = tmp_path / "message.bin"
    path.write_bytes(MESSAGE)
    return path


def openssl_sign(key: Path, message: Path, out: Path, distid: bool = True) -> bytes:
    args = ["pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(key)]
    args += ["-in", str(message), "-out", str(out)] + (DISTID if distid else [])
    assert openssl(*args).returncode == 0
    return out.read_bytes()


def openssl_verify(pub: Path, message: Path, sig: Path) -> bool:
    args = ["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", str(pub)]
    result = openssl(*args, "-in", str(message), "-sigfile", str(sig), *DISTID)
    return result.returncode == 0 and b"Verified Successfully" in result.stdout


def test_openssl_keys_load_and_reexport_identically(openssl_key):
    key_pem, pub_pem = (p.read_text() for p in openssl_key)
    for name in BACKENDS:
        key = sm2.load_pem_private_key(key_pem, backend=sm2.backend(name))
        assert key.to_pem() == key_pem
        assert key.public_key.to_pem() == pub_pem
        assert sm2.load_pem_public_key(pub_pem) == key.public_key


def test_our_keys_load_in_openssl(tmp_path):
    key = sm2.generate_private_key()
    (tmp_path / "k.pem").write_text(key.to_pem())
    (tmp_path / "p.pem").write_text(key.public_key.to_pem())
    text = openssl("pkey", "-in", str(tmp_path / "k.pem"), "-text", "-noout")
    assert text.returncode == 0 and b"ASN1 OID: SM2" in text.stdout
    pub = openssl("pkey", "-in", str(tmp_path / "k.pem"), "-pubout")
    assert pub.stdout.decode() == key.public_key.to_pem()
    assert openssl("pkey", "-pubin", "-in", str(tmp_path / "p.pem"), "-noout").returncode == 0


@pytest.mark.parametrize("name", BACKENDS)
def test_openssl_signature_verifies_here(name, openssl_key, message_file, tmp_path):
    key_path, pub_path = openssl_key
    sig = openssl_sign(key_path, message_file, tmp_path / "sig.der")
    be = sm2.backend(name)
    assert sm2.verify(pub_path.read_text(), MESSAGE, sig, backend=be)
    assert not sm2.verify(pub_path.read_text(), MESSAGE + b"!", sig, backend=be)
    tampered = bytearray(sig)
    tampered[-1] ^= 1
    assert not sm2.verify(pub_path.read_text(), MESSAGE, bytes(tampered), backend=be)


@pytest.mark.parametrize("name", BACKENDS)
def test_our_signature_verifies_in_openssl(name, openssl_key, message_file, tmp_path):
    key_path, pub_path = openssl_key
    key = sm2.load_pem_private_key(key_path.read_text())
    sig_path = tmp_path / "sig.der"
    sig_path.write_bytes(sm2.sign(key, MESSAGE, backend=sm2.backend(name)))
    assert openssl_verify(pub_path, message_file, sig_path)
    message_file.write_bytes(MESSAGE + b"!")
    assert not openssl_verify(pub_path, message_file, sig_path)


def test_openssl_without_distid_is_a_different_z(openssl_key, message_file, tmp_path):
    key_path, pub_path = openssl_key
    sig = openssl_sign(key_path, message_file, tmp_path / "sig.der", distid=False)
    assert not sm2.verify(pub_path.read_text(), MESSAGE, sig)
    assert sm2.verify(pub_path.read_text(), MESSAGE, sig, uid=b"")


@pytest.mark.parametrize("name", BACKENDS)
def test_openssl_ciphertext_decrypts_here(name, openssl_key, tmp_path):
    key_path, pub_path = openssl_key
    (tmp_path / "pt").write_bytes(b"SM4 data key 16B")
    args = ["pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub_path)]
    assert openssl(*args, "-in", str(tmp_path / "pt"), "-out", str(tmp_path / "ct")).returncode == 0
    ct = (tmp_path / "ct").read_bytes()
    assert ct[0] == 0x30  # GM/T 0009 DER SM2Cipher
    key = sm2.load_pem_private_key(key_path.read_text())
    assert sm2.decrypt(key, ct, backend=sm2.backend(name)) == b"SM4 data key 16B"


@pytest.mark.parametrize("name", BACKENDS)
def test_our_ciphertext_decrypts_in_openssl(name, openssl_key, tmp_path):
    key_path, pub_path = openssl_key
    pub = sm2.load_pem_public_key(pub_path.read_text())
    (tmp_path / "ct").write_bytes(sm2.encrypt(pub, b"\x00secret\xff", backend=sm2.backend(name)))
    out = openssl("pkeyutl", "-decrypt", "-inkey", str(key_path), "-in", str(tmp_path / "ct"))
    assert out.returncode == 0 and out.stdout == b"\x00secret\xff"
