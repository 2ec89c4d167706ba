"""The committed GraphiQL bundle (gateway/static/graphiql) is exactly what web/graphiql's lockfile
builds: rebuilt here with `node web/graphiql/build.mjs` from node_modules (`make graphiql`, i.e.
`npm ci --prefix web/graphiql`) and compared byte for byte, so nobody hand-edits it and a
lockfile change without `make graphiql-assets` fails. Without node_modules this fails, never skips."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

NODE_DIR = ROOT / "web" / "graphiql"
COMMITTED = ROOT / "gateway" / "static" / "graphiql"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if (
        not (NODE_DIR / "node_modules" / "graphiql").is_dir()
        or not (NODE_DIR / "node_modules" / "esbuild").is_dir()
    ):
        raise RuntimeError(
            "web/graphiql/node_modules is missing: run `make graphiql` (npm ci --prefix web/graphiql)."
        )
    node = shutil.which("node")
    assert node, "Node.js 20+ is required to rebuild the workbench's assets"
    out = tmp_path_factory.mktemp("graphiql") / "out"
    done = subprocess.run(
        [node, "build.mjs", str(out)], cwd=NODE_DIR, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return out


def test_the_committed_bundle_is_what_the_lockfile_builds(rebuilt: Path) -> None:
    built, committed = _files(rebuilt), _files(COMMITTED)
    assert sorted(built) == sorted(committed), "run `make graphiql-assets` and commit gateway/static/graphiql"
    changed = [name for name in built if built[name] != committed[name]]
    assert changed == [], f"differs from the lockfile's build (run `make graphiql-assets`): {changed}"


def test_the_lockfile_pins_what_package_json_names() -> None:
    package = json.loads((NODE_DIR / "package.json").read_text())
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    for name, version in {**package["dependencies"], **package["devDependencies"]}.items():
        assert version[0].isdigit(), f"{name} is not pinned to one version: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name


def test_every_bundled_package_has_its_licence_beside_it() -> None:
    listed = json.loads((COMMITTED / "licenses" / "packages.json").read_text())
    names = {p["name"] for p in listed}
    assert {"graphiql", "react", "react-dom", "graphql", "monaco-editor", "@graphiql/react"} <= names
    for p in listed:
        folder = COMMITTED / "licenses" / f"{p['name']}@{p['version']}"
        assert p["files"] and all((folder / f).is_file() for f in p["files"]), p
        assert p["license"], p
    graphiql = (COMMITTED / "licenses" / f"graphiql@{_version(listed, 'graphiql')}" / "LICENSE").read_text()
    assert "MIT" in graphiql or "Permission is hereby granted" in graphiql


def _version(listed: list[dict[str, str]], name: str) -> str:
    return next(p["version"] for p in listed if p["name"] == name)


def test_graphiqls_own_labels_are_chinese_first() -> None:
    """web/graphiql/src/labels.mjs is applied: the committed bundle (esbuild writes \\u escapes)
    carries the Chinese-first labels and not the English ones they replace."""
    raw = (COMMITTED / "graphiql.js").read_text("utf-8")
    text = re.sub(r"\\u([0-9A-Fa-f]{4})", lambda m: chr(int(m[1], 16)), raw)
    for label in (
        "格式化 Prettify query (",
        "变量 Variables",
        "历史 History",
        "文档 Documentation explorer",
        '"显示 文档 Documentation explorer"',
        "执行查询 Execute query",
        "设置 Settings",
    ):
        assert label in text, label
    for english in (
        '"Show Documentation Explorer"',
        'children:"Variables"',
        '"Close Tab"',
        '"Open settings dialog"',
    ):
        assert english not in text, english
