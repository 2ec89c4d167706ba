"""GraphQL errors with `extensions.code`, the only way errors leave the resolvers."""

from __future__ import annotations

from typing import Any

# Request errors: the operation does not run at all.
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
TOO_MANY_ROOT_FIELDS = "TOO_MANY_ROOT_FIELDS"
PAGE_SIZE_EXCEEDED = "PAGE_SIZE_EXCEEDED"
FILTER_TOO_LARGE = "FILTER_TOO_LARGE"
OPERATION_NOT_SUPPORTED = "OPERATION_NOT_SUPPORTED"
# Field errors: the field is null, the rest of the response stands.
FORBIDDEN = "FORBIDDEN"
FORBIDDEN_FIELD = "FORBIDDEN_FIELD"
FORBIDDEN_FILTER = "FORBIDDEN_FILTER"
INTERNAL = "INTERNAL_SERVER_ERROR"


class RequestError(Exception):
    """Raised before execution: the response has no `data`."""

    def __init__(
        self, message: str, code: str, *, locations: list[dict[str, int]] | None = None, **extensions: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.locations = locations
        self.extensions = extensions

    def formatted(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.locations:
            out["locations"] = self.locations
        out["extensions"] = {"code": self.code, **self.extensions}
        return out


class FieldError(Exception):
    """Raised while planning or running one root field: that field becomes null."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extensions = extensions


def field_error(
    message: str,
    path: list[str | int],
    code: str,
    locations: list[dict[str, int]] | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"message": message}
    if locations:
        out["locations"] = locations
    out["path"] = path
    out["extensions"] = {"code": code, **extensions}
    return out
