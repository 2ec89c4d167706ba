"""Domestic (国密) cryptography for Shuqiao; imports nothing else of ours.

* :mod:`keys.sm3` — SM3 hash and HMAC-SM3 (GB/T 32905)
* :mod:`keys.sm4` — SM4-GCM authenticated encryption (GB/T 32907, SP 800-38D)
* :mod:`keys.sm2` — SM2 keys, signatures, encryption (GB/T 32918, GM/T 0009)
* :mod:`keys.errors` — the exceptions all of the above raise

See ``keys/README.md`` for checking our output with the ``openssl`` CLI.
"""
