"""The README and docs/ keep their promises: every link points at a file in the repository (and
at a heading that exists), and every `shuqiao …` command they name exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"(?<!\\)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>]+)>")
COMMAND = re.compile(r"(?<![\w.-])shuqiao((?:[ \t]+[a-z][\w-]*)+)")


def _prose(text: str) -> str:
    return INLINE.sub("", FENCE.sub("", text))


def _code(text: str) -> list[str]:
    return [m.group(0) for m in FENCE.finditer(text)] + [m.group(0) for m in INLINE.finditer(text)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", doc.read_text()), re.M)
    return {_slug(h) for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_points_inside_the_repository(doc: Path) -> None:
    prose = _prose(doc.read_text())
    assert not AUTOLINK.findall(prose), "links outside the repository"
    for target in LINK.findall(prose):
        assert not re.match(r"^[a-z][a-z0-9+.-]*:|^//", target, re.I), f"{target}: outside the repository"
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        assert resolved.is_relative_to(ROOT), f"{target}: outside the repository"
        assert resolved.exists(), f"{target}: no such file"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{target}: no such heading"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_named_in_code_is_in_the_repository(doc: Path) -> None:
    """`docs/identity.md` written as code is still a pointer: it must exist, inside the repo."""
    for span in INLINE.findall(FENCE.sub("", doc.read_text())):
        name = span.strip("`")
        if not re.fullmatch(r"[\w./-]+\.md", name):
            continue
        candidates = [(doc.parent / name).resolve(), (ROOT / name).resolve()]
        assert any(c.is_relative_to(ROOT) and c.exists() for c in candidates), (
            f"{name}: not in the repository"
        )


def _named_commands() -> set[tuple[str, ...]]:
    """Each command path the README names: `shuqiao catalog list | publish CODE` names
    (catalog, list) and (catalog, publish)."""
    root = typer.main.get_command(app)
    found: set[tuple[str, ...]] = set()
    for snippet in _code((ROOT / "README.md").read_text()):
        for line in snippet.splitlines():
            for m in COMMAND.finditer(line):
                words = m.group(1).split()
                path: list[str] = []
                commands: dict[str, Any] | None = root.commands  # type: ignore[attr-defined]
                for word in words:
                    if commands is None or (word not in commands and path):
                        break  # past a leaf command: an argument (a name, a PREFIX)
                    path.append(word)  # unknown at the top: kept, so the test names it
                    commands = getattr(commands.get(word), "commands", None)
                found.add(tuple(path))
                # alternatives after " | " on the same line: siblings of the last word
                rest = line[m.end() :]
                if len(path) >= 1 and rest.lstrip().startswith("|"):
                    for alt in re.findall(r"\|\s*([a-z][\w-]*)", rest):
                        found.add((*path[:-1], alt))
    return found


def test_the_readme_names_commands() -> None:
    named = _named_commands()
    assert ("catalog", "publish") in named and ("keys", "revoke-department") in named
    assert ("decrypt-field",) in named and ("apikey", "rotate") in named


@pytest.mark.parametrize("command", sorted(_named_commands()), ids=" ".join)
def test_every_readme_command_exists(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"shuqiao {' '.join(command)}: {result.output}"


def test_catalog_publish_takes_what_the_readme_says() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "publish CODE" in readme
    out = CliRunner().invoke(app, ["catalog", "publish", "--help"]).output
    assert "CODE" in out and "资源代码" in out


@pytest.mark.parametrize("demo_env", ["sqlite"], indirect=True)
def test_catalog_publish_by_code_or_resource_code(demo_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`shuqiao catalog publish CODE`: CODE as `catalog list` shows it, either column."""
    import json

    s = demo_env.settings
    monkeypatch.setenv("SHUQIAO_DATABASE_URL", s.database_url)
    monkeypatch.setenv("SHUQIAO_VAR_DIR", str(s.var_dir))
    monkeypatch.setenv("SHUQIAO_MASTER_KEY_FILE", str(s.master_key_file))
    runner = CliRunner()

    def published() -> bool:
        listed = json.loads(runner.invoke(app, ["catalog", "list", "--json"]).output)
        return next(d["published"] for d in listed if d["code"] == "air_quality_daily")

    try:
        by_resource = runner.invoke(app, ["catalog", "unpublish", "610000-ECO-000002"])
        assert by_resource.exit_code == 0, by_resource.output
        assert "air_quality_daily unpublished" in by_resource.output and not published()
        by_code = runner.invoke(app, ["catalog", "publish", "air_quality_daily"])
        assert by_code.exit_code == 0 and published()
        unknown = runner.invoke(app, ["catalog", "publish", "610000-NONE-000001"])
        assert unknown.exit_code == 2 and "no dataset" in unknown.output
    finally:
        runner.invoke(app, ["catalog", "publish", "air_quality_daily"])
