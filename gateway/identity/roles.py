"""People's roles and the scopes each may be granted (DESIGN.md section 1)."""

from __future__ import annotations

API_SCOPES = ("share:read", "catalog:write", "grants:approve", "audit:read", "admin")
OIDC_SCOPES = ("openid", "profile")

ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "developer": ("department developer 部门开发者", frozenset({"share:read"})),
    "steward": ("data steward 数据管理员", frozenset({"share:read", "catalog:write", "grants:approve"})),
    "security_officer": ("security officer 安全管理员", frozenset({"audit:read"})),
    "enterprise_user": ("enterprise user 企业用户", frozenset()),
    "admin": ("administrator 系统管理员", frozenset(API_SCOPES)),
}


class UnknownRole(ValueError):
    pass


def check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise UnknownRole(f"unknown roles: {', '.join(unknown)} (known: {', '.join(ROLES)})")
    return sorted(set(roles))


def scopes_for_roles(roles: list[str] | frozenset[str]) -> frozenset[str]:
    out: set[str] = set(OIDC_SCOPES)
    for r in roles:
        out |= ROLES.get(r, ("", frozenset()))[1]
    return frozenset(out)
