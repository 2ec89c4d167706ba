"""Media types of GraphQL over HTTP, for every GraphQL endpoint (the tiers, the subgraphs,
/admin/graphql, /audit/graphql): which response type a client's Accept header chooses, the
Content-Type an answer carries, and the request body's type a POST must declare."""

from __future__ import annotations

from gateway.problems import JSON, Problem

GRAPHQL_RESPONSE = "application/graphql-response+json"
UTF8 = ("utf-8", "utf8")


def negotiate(accept: str | None) -> str | None:
    """The response media type (GraphQL over HTTP, "Body"): the acceptable one the client ranks
    highest, or None when it accepts neither. A media range naming a charset other than UTF-8 is
    not acceptable (responses are UTF-8)."""
    if not accept:
        return JSON  # legacy clients: the spec says treat a missing Accept as application/json
    best, best_q = None, 0.0
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        charset_ok = True
        for p in params:
            name, _, value = p.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"').lower()
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif name == "charset":
                charset_ok = value in UTF8
        candidate = {
            GRAPHQL_RESPONSE: GRAPHQL_RESPONSE,
            JSON: JSON,
            "application/*": GRAPHQL_RESPONSE,
            "*/*": JSON,
        }.get(media.lower())
        if candidate and charset_ok and q > best_q:
            best, best_q = candidate, q
    return best


def content_type(status: int, media: str | None) -> str:
    """The Content-Type of an answer, with its encoding. A legacy client (application/json) gets
    application/json for 2xx answers only: any other answer declares itself a GraphQL response
    (spec, "Body"), so intermediaries and clients can tell it from a proxy's error page. A 406
    (no media type acceptable) is plain JSON."""
    if media is None:
        chosen = JSON
    elif status >= 300:
        chosen = GRAPHQL_RESPONSE
    else:
        chosen = media
    return f"{chosen}; charset=utf-8"


NOT_ACCEPTABLE = Problem(406, f"Accept {GRAPHQL_RESPONSE} or {JSON}.", "NOT_ACCEPTABLE")


def check_content_type(header: str) -> None:
    """POST bodies are application/json in UTF-8 (assumed when no charset is named); a missing or
    other Content-Type is a 415."""
    media, *params = [p.strip() for p in header.split(";")]
    charsets = [
        p.partition("=")[2].strip().strip('"').lower() for p in params if p.lower().startswith("charset")
    ]
    if media.lower() != JSON or any(c not in UTF8 for c in charsets):
        raise Problem(
            415,
            "POST a JSON body with Content-Type: application/json (UTF-8).",
            "UNSUPPORTED_MEDIA_TYPE",
            {"Accept-Post": "application/json"},
        )
