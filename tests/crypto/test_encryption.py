"""The encrypt action: L4 / sensitive fields granted to a department reach it sealed to its
registered SM2 key (compact SM2-SM4-GCM), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.crypto.encryption import decrypt_field, parse_compact, value_kid
from gateway.identifiers import is_valid_id_number
from keys import sm2
from keys.errors import DecryptionError
from tests.conftest import gql
from tests.crypto.conftest import on_db

COMPACT = re.compile(r"SM2-SM4-GCM\.[0-9a-f]{16}(\.[A-Za-z0-9_-]+){2}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")
Q = "{ population(first: 5) { edges { node { name idNumber } } } }"


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def test_hrss_receives_id_numbers_encrypted_to_its_key(
    client: Any, tokens: dict[str, str], hrss_key: dict[str, str]
) -> None:
    body = gql(client, "share", Q, token=tokens["hrss"]).json()
    assert "errors" not in body, body
    private = Path(hrss_key["private_key_file"]).read_text()
    nodes = [e["node"] for e in body["data"]["population"]["edges"]]
    assert len(nodes) == 5
    for n in nodes:
        value = n["idNumber"]
        assert COMPACT.fullmatch(value), value
        assert value_kid(value) == hrss_key["kid"]
        clear = decrypt_field(private, value, "population", "idNumber")
        assert len(clear) == 18 and is_valid_id_number(clear)
        assert decrypt_field(private, value, "population", "id_number") == clear
    # one content key per response: the wrapped key is shared, every nonce is fresh
    envelopes = [parse_compact(n["idNumber"]) for n in nodes]
    assert len({e["wrappedKey"] for e in envelopes}) == 1
    assert len({e["nonce"] for e in envelopes}) == 5
    again = gql(client, "share", Q, token=tokens["hrss"]).json()["data"]["population"]["edges"][0]["node"]
    assert parse_compact(again["idNumber"])["wrappedKey"] != envelopes[0]["wrappedKey"]


def test_encrypted_value_is_bound_to_its_field_and_key(
    client: Any, tokens: dict[str, str], hrss_key: dict[str, str]
) -> None:
    body = gql(client, "share", Q, token=tokens["hrss"]).json()
    value = body["data"]["population"]["edges"][0]["node"]["idNumber"]
    private = Path(hrss_key["private_key_file"]).read_text()
    for dataset, field in (("population", "name"), ("social_insurance", "id_number")):
        with pytest.raises(DecryptionError, match="authentication failed"):
            decrypt_field(private, value, dataset, field)
    with pytest.raises(DecryptionError, match="wrapped key does not decrypt"):
        decrypt_field(sm2.generate_private_key(), value, "population", "idNumber")
    alg, kid, wrapped, nonce, ct, tag = value.split(".")
    with pytest.raises(DecryptionError):
        decrypt_field(private, ".".join((alg, "0" * 16, wrapped, nonce, ct, tag)), "population", "idNumber")
    flipped = ct[:-1] + ("A" if ct[-1] != "A" else "B")
    with pytest.raises(DecryptionError, match="authentication failed"):
        decrypt_field(private, ".".join((alg, kid, wrapped, nonce, flipped, tag)), "population", "idNumber")
    for broken in ("", "SM2-SM4-GCM.abc", value.replace("SM2-SM4-GCM", "SM4-GCM"), value + ".x"):
        with pytest.raises(DecryptionError):
            decrypt_field(private, broken, "population", "idNumber")


def test_samr_cannot_obtain_id_numbers(client: Any, tokens: dict[str, str], hrss_key: dict[str, str]) -> None:
    body = gql(client, "share", Q, token=tokens["samr"]).json()
    assert body["data"]["population"] is None
    assert set(_codes(body)) == {"FORBIDDEN_FIELD"}
    assert "SM2-SM4-GCM" not in str(body)


def test_department_without_a_key_is_denied_saying_why_until_it_registers_one(
    client: Any, tokens: dict[str, str], demo_env: Any
) -> None:
    from gateway.crypto.service import list_department_keys, register_department_key
    from gateway.grants.service import create_grant
    from policies.model import Tier

    assert not [k for k in on_db(demo_env, list_department_keys) if k.department == "eco"]
    on_db(
        demo_env,
        lambda e: create_grant(
            e,
            tier=Tier.SHARE,
            dataset="population",
            consumer="eco",
            fields=["id_number", "name"],
            clear_fields=["name"],
            purpose="测试: 无登记密钥",
            expires_at=datetime.now(UTC) + timedelta(days=1),
        ),
    )
    body = gql(client, "share", Q, token=tokens["eco"]).json()
    edges = body["data"]["population"]["edges"]
    assert edges and all(e["node"]["name"] and e["node"]["idNumber"] is None for e in edges)
    assert set(_codes(body)) == {"FORBIDDEN_FIELD"}
    reasons = {e["extensions"]["reason"] for e in body["errors"]}
    assert reasons == {
        "granted, but delivered only encrypted to the department's registered SM2 key, and none is available"
    }
    assert {e["path"][-1] for e in body["errors"]} == {"idNumber"}

    # once eco registers a key, the running gateway encrypts to it (no restart)
    eco = sm2.generate_private_key()
    info = on_db(demo_env, lambda e: register_department_key(e, "eco", eco.public_key.to_pem()))
    body = gql(client, "share", Q, token=tokens["eco"]).json()
    assert "errors" not in body, body
    value = body["data"]["population"]["edges"][0]["node"]["idNumber"]
    assert value_kid(value) == info.kid
    assert is_valid_id_number(decrypt_field(eco, value, "population", "idNumber"))

    # a new key retires the old one: values follow the new key even for a cached query plan
    eco2 = sm2.generate_private_key()
    info2 = on_db(demo_env, lambda e: register_department_key(e, "eco", eco2.public_key.to_pem()))
    value = gql(client, "share", Q, token=tokens["eco"]).json()["data"]["population"]["edges"][0]["node"][
        "idNumber"
    ]
    assert value_kid(value) == info2.kid
    assert is_valid_id_number(decrypt_field(eco2, value, "population", "idNumber"))
    statuses = {k.kid: k.status for k in on_db(demo_env, list_department_keys) if k.department == "eco"}
    assert statuses == {info.kid: "retired", info2.kid: "active"}


def test_decrypt_field_cli(client: Any, tokens: dict[str, str], hrss_key: dict[str, str]) -> None:
    from gateway.cli import app

    body = gql(client, "share", Q, token=tokens["hrss"]).json()
    values = [e["node"]["idNumber"] for e in body["data"]["population"]["edges"][:2]]
    key = hrss_key["private_key_file"]
    out = CliRunner().invoke(app, ["decrypt-field", "--key", key, "--field", "population.idNumber", *values])
    assert out.exit_code == 0, out.output
    lines = out.output.split()
    assert len(lines) == 2 and all(is_valid_id_number(x) for x in lines)
    wrong = CliRunner().invoke(app, ["decrypt-field", "--key", key, "--field", "population.name", values[0]])
    assert wrong.exit_code == 1 and "authentication failed" in wrong.output


def test_registration_rejects_bad_keys(demo_env: Any, tmp_path: Path) -> None:
    from gateway.crypto.service import KeyRegistrationError, register_department_key

    key = sm2.generate_private_key()
    with pytest.raises(KeyRegistrationError, match="private key"):
        on_db(demo_env, lambda e: register_department_key(e, "tax", key.to_pem()))
    with pytest.raises(KeyRegistrationError, match="not an SM2 public key"):
        on_db(
            demo_env,
            lambda e: register_department_key(
                e, "tax", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
            ),
        )
    with pytest.raises(KeyRegistrationError, match="unknown department"):
        on_db(demo_env, lambda e: register_department_key(e, "nosuch", key.public_key.to_pem()))
