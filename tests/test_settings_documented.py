"""Every SHUQIAO_* setting the code reads is documented, and every one the docs name is read.

In the style of Datasette's documentation tests: the settings come from the code (what
`Settings.from_env()` actually reads, plus every literal SHUQIAO_* name in the packages), the
documentation from README.md and docs/*.md, by full name (a `SHUQIAO_AUDIT_ALERT_*` wildcard or a
`_MAX_DEPTH` shorthand documents nothing)."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway.settings
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "catalogue", "schema", "resolvers", "policies", "keys")
PREFIX = "SHUQIAO_"
# A whole setting name: the prefix, then a name that does not end in "_" (that is a wildcard).
NAME = re.compile(r"\bSHUQIAO_[A-Z0-9_]*[A-Z0-9]\b(?![_*])")
BARE = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")


def _python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from (ROOT / root).rglob("*.py")
    yield ROOT / "asgi.py"


class _Recorder(dict[str, str]):
    """os.environ stand-in that remembers every name looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def read_by_settings(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The names Settings.from_env() looks up, with none of them set (so every default path runs)."""
    env = _Recorder({k: v for k, v in os.environ.items() if not k.startswith(PREFIX)})
    monkeypatch.setattr(os, "environ", env)
    Settings.from_env()
    return {name for name in env.read if name.startswith(PREFIX)}


def named_in_code(roots: tuple[str, ...] = PACKAGES) -> set[str]:
    """SHUQIAO_* names written out in the code: whole string constants (`os.environ.get("SHUQIAO_X")`,
    `ENV_VAR = "SHUQIAO_X"`), and in gateway/settings.py the bare names its helpers prefix
    (`_int("MAX_DEPTH", …)`), including reads that happen only on some paths."""
    found: set[str] = set()
    for path in _python_files(*roots):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                found.add(node.value)
    settings_tree = ast.parse(Path(gateway.settings.__file__).read_text(encoding="utf-8"))
    helpers = {n.name for n in settings_tree.body if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(settings_tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in helpers
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and BARE.fullmatch(node.args[0].value)
        ):
            found.add(PREFIX + node.args[0].value)
    return found


def documented() -> dict[str, set[str]]:
    """Each full SHUQIAO_* name in README.md and docs/*.md → the files naming it."""
    names: dict[str, set[str]] = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in NAME.findall(doc.read_text(encoding="utf-8")):
            names.setdefault(name, set()).add(doc.relative_to(ROOT).as_posix())
    return names


@pytest.fixture(scope="module")
def docs() -> dict[str, set[str]]:
    return documented()


def test_the_scan_sees_what_settings_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The static scan must find at least what a real call reads; else it is scanning the wrong thing.
    read = read_by_settings(monkeypatch)
    assert {"SHUQIAO_DATABASE_URL", "SHUQIAO_MAX_DEPTH", "SHUQIAO_AUDIT_WORKING_DAYS"} <= read
    assert read <= named_in_code()


def test_every_setting_read_is_documented(monkeypatch: pytest.MonkeyPatch, docs: dict[str, set[str]]) -> None:
    read = read_by_settings(monkeypatch) | named_in_code()
    missing = sorted(read - set(docs))
    assert not missing, f"settings read by the code but not documented in README.md or docs/*.md: {missing}"


def test_every_documented_setting_is_read(monkeypatch: pytest.MonkeyPatch, docs: dict[str, set[str]]) -> None:
    # The test suite's own settings (SHUQIAO_TEST_*) count as read: the README documents them too.
    read = read_by_settings(monkeypatch) | named_in_code() | named_in_code(("tests",))
    stale = {name: sorted(files) for name, files in docs.items() if name not in read}
    assert not stale, f"documented but read nowhere (renamed or never built?): {stale}"
