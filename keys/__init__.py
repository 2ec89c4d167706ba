"""Domestic (国密) cryptography for Shuqiao; imports nothing else of ours.

* :mod:`keys.sm3` — SM3 hash and HMAC-SM3 (GB/T 32905)
* :mod:`keys.sm4` — SM4-GCM authenticated encryption (GB/T 32907, SP 800-38D)
* :mod:`keys.sm2` — SM2 keys, signatures, encryption (GB/T 32918, GM/T 0009)
* :mod:`keys.rfc9530` / :mod:`keys.rfc9421` — Content-Digest (SM3) and SM2 response signatures
* :mod:`keys.envelope` — SM2-SM4-GCM field envelope
* :mod:`keys.keystore` — file store and rotation of SM2 signing keys
* :mod:`keys.errors` — the exceptions all of the above raise

See ``keys/README.md`` for checking our output with the ``openssl`` CLI.
"""
