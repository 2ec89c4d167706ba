"""HTTP ``Content-Digest`` (RFC 9530) with the SM3 hash.

``sm3`` is not in the IANA "Hash Algorithms for HTTP Digest Fields" registry;
we use it as the algorithm key because the gateway's clients are required to
use 国密 algorithms. The field is an RFC 8941 dictionary, so a peer may send
other algorithms alongside; they are ignored, and only ``sm3`` is checked.
The digest covers the message content as sent (after any content coding).
"""

from __future__ import annotations

import hmac

from keys import rfc8941
from keys.sm3 import sm3

ALGORITHM = "sm3"


def content_digest(body: bytes) -> str:
    """The ``Content-Digest`` field value for ``body``: ``sm3=:<base64>:``."""
    return rfc8941.serialize_dictionary({ALGORITHM: rfc8941.Item(sm3(body))})


def verify_content_digest(header: str, body: bytes) -> bool:
    """True iff ``header`` has an ``sm3`` byte-sequence member equal to SM3(``body``).

    False (never raises) when the field does not parse, has no ``sm3`` member,
    or the digest differs; other algorithms are ignored, not trusted.
    """
    try:
        members = rfc8941.parse_dictionary(header)
    except ValueError:
        return False
    member = members.get(ALGORITHM)
    if not isinstance(member, rfc8941.Item) or not isinstance(member.value, bytes):
        return False
    return hmac.compare_digest(member.value, sm3(body))
