"""How catalogue names become GraphQL names (one place, so every tier agrees)."""

from __future__ import annotations


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def pascal(snake: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in snake.split("_"))


def enum_value(snake: str) -> str:
    return snake.upper()
