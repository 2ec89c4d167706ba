"""`shuqiao serve --host/--port`: the issuer follows the address served unless SHUQIAO_ISSUER is set."""

from __future__ import annotations

import os
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.settings import Settings, default_issuer, serve_environment


def test_issuer_follows_host_and_port() -> None:
    assert serve_environment("127.0.0.1", 9123, {}) == {"SHUQIAO_ISSUER": "http://127.0.0.1:9123"}
    assert serve_environment("gw.example.gov.cn", 80, {"SHUQIAO_ISSUER": ""}) == {
        "SHUQIAO_ISSUER": "http://gw.example.gov.cn:80"
    }
    assert default_issuer("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert default_issuer("::", 8000) == "http://[::1]:8000"
    assert default_issuer("fe80::1", 8443) == "http://[fe80::1]:8443"


def test_a_set_issuer_wins() -> None:
    assert serve_environment("127.0.0.1", 9123, {"SHUQIAO_ISSUER": "https://gw.example.gov.cn"}) == {}


@pytest.mark.parametrize("preset", [None, "https://gw.example.gov.cn"])
def test_serve_hands_the_issuer_to_the_workers(monkeypatch: pytest.MonkeyPatch, preset: str | None) -> None:
    """Through the CLI, with uvicorn.run replaced: what the workers' settings would say."""
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(target: str, **kwargs: Any) -> None:
        seen["issuer"] = Settings.from_env().issuer
        seen["kwargs"] = kwargs

    if preset is None:
        monkeypatch.delenv("SHUQIAO_ISSUER", raising=False)
    else:
        monkeypatch.setenv("SHUQIAO_ISSUER", preset)
    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # serve writes the workers' environment
    result = CliRunner().invoke(app, ["serve", "--host", "127.0.0.2", "--port", "9124"])
    assert result.exit_code == 0, result.output
    assert seen["issuer"] == (preset or "http://127.0.0.2:9124")
    assert (seen["kwargs"]["host"], seen["kwargs"]["port"]) == ("127.0.0.2", 9124)
    assert seen["kwargs"]["log_config"]["loggers"]["shuqiao.http"]["level"] == "INFO"
