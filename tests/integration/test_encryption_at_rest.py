"""L4 and sensitive columns are encrypted in the pool: nothing clear on disk, equality still
works through blind indexes, and clear legacy data is encrypted in place, resumably."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from catalogue import service
from catalogue.encrypt_existing import encrypt_existing
from catalogue.pool import pool_table
from catalogue.protection import CIPHER_PREFIX, PoolKeyring, blind_column
from catalogue.spec import DatasetSpec, DepartmentSpec, FieldSpec, FieldType
from gateway.db import create_engine, upgrade
from gateway.demo.generate import DemoGenerator
from policies.model import PI, Category, Level, Open, Share
from tests.conftest import gql


def test_database_file_holds_no_clear_id_numbers(demo_env: Any, tmp_path: Path) -> None:
    if demo_env.backend != "sqlite":
        pytest.skip("the file check greps the SQLite file; PostgreSQL is checked through SQL below")
    db = Path(demo_env.settings.database_url.split("///", 1)[1])
    ids = [row[0] for row, _ in zip(DemoGenerator("small").rows("population"), range(500), strict=False)]
    assert len(ids) == 500 and all(len(i) == 18 for i in ids)
    patterns = tmp_path / "ids.txt"
    patterns.write_text("\n".join(ids))
    files = [str(p) for p in (db, Path(f"{db}-wal")) if p.exists()]
    # grep in another process: opening and closing the file in this one would drop the
    # POSIX locks SQLite holds on it (a documented SQLite pitfall) and corrupt the test store.
    found = subprocess.run(["grep", "-aFo", "-f", str(patterns), *files], capture_output=True, check=False)
    assert found.returncode == 1, found.stdout[:200]  # 1: no line matched; 0 would be a leak


def test_stored_values_are_ciphertext_on_every_backend(demo_env: Any) -> None:
    async def go() -> list[str]:
        engine = create_engine(demo_env.settings.database_url)
        try:
            async with engine.connect() as conn:
                return list(
                    (await conn.execute(text("SELECT id_number FROM pool_population LIMIT 50"))).scalars()
                )
        finally:
            await engine.dispose()

    assert all(v.startswith(CIPHER_PREFIX) for v in asyncio.run(go()))


def test_equality_filters_and_entity_lookups_use_the_blind_index(client: Any, tokens: dict[str, str]) -> None:
    someone = next(DemoGenerator("small").rows("population"))
    id_number, name = someone[0], someone[1]
    q = (
        "query($id: String!) { population(where: {idNumber: {eq: $id}}) "
        "{ totalCount edges { node { name } } } }"
    )
    body = gql(client, "share", q, token=tokens["police"], variables={"id": id_number}).json()
    assert body["data"]["population"]["totalCount"] == 1
    assert body["data"]["population"]["edges"][0]["node"]["name"] == name  # the provider reads in clear
    lower = gql(client, "share", q, token=tokens["police"], variables={"id": id_number.lower()}).json()
    assert lower["data"]["population"]["totalCount"] == 1  # normalised: a lower-case x still matches
    person = gql(
        client,
        "share",
        "query($id: String!) { person(idNumber: $id) { population { name } } }",
        token=tokens["police"],
        variables={"id": id_number},
    ).json()
    assert person["data"]["person"]["population"] == [{"name": name}]
    prefix = gql(
        client,
        "share",
        '{ population(where: {idNumber: {prefix: "6101"}}) { totalCount } }',
        token=tokens["police"],
    )
    assert prefix.status_code == 400
    assert prefix.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    order = gql(
        client,
        "share",
        "{ population(orderBy: [{field: ID_NUMBER}]) { totalCount } }",
        token=tokens["police"],
    )
    assert order.status_code == 400


def test_a_reference_stored_encrypted_still_links(client: Any, tokens: dict[str, str]) -> None:
    q = (
        "{ enterpriseRegistration(first: 3) { edges { node { legalRepIdNumber "
        "legalRep { idNumber population { name } } } } } }"
    )
    body = gql(client, "share", q, token=tokens["samr"]).json()
    for e in body["data"]["enterpriseRegistration"]["edges"]:
        node = e["node"]  # samr reads its own legal_rep_id_number in clear; the link key is decrypted
        assert len(node["legalRepIdNumber"]) == 18
        assert node["legalRep"]["idNumber"] == node["legalRepIdNumber"]
        assert node["legalRep"]["population"] is None  # police's data: samr holds no grant
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN_FIELD"}
    # Another department may not follow the reference at all: it cannot read it in clear.
    other = gql(client, "share", q, token=tokens["tax"]).json()
    for e in other["data"]["enterpriseRegistration"]["edges"]:
        assert e["node"]["legalRep"] is None and e["node"]["legalRepIdNumber"] is None


SPEC = DatasetSpec(
    "legacy_register",
    "610000-TEST-000001",
    "存量登记",
    "Legacy register",
    "legacy",
    Category.THEME,
    Share.CONDITIONAL,
    Open.NONE,
    (
        FieldSpec("id_number", FieldType.STRING, "身份证号", level=Level.L4, pi=PI.SENSITIVE),
        FieldSpec("note", FieldType.STRING, "备注"),
    ),
)


def test_existing_clear_data_is_encrypted_in_place_and_resumably(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}"
    upgrade(url)
    master = bytes(32)
    clear = [f"61011319900101{i:04d}" for i in range(25)]

    async def go() -> None:
        engine = create_engine(url)
        try:
            await service.save_department(engine, DepartmentSpec("legacy", "存量部门"))
            await service.save_dataset(engine, SPEC)
            table = pool_table(SPEC)
            async with engine.begin() as conn:  # rows written before encryption existed
                await conn.execute(table.insert(), [{"id_number": v, "note": "n"} for v in clear])
            first = await encrypt_existing(engine, master, batch=10, max_batches=1)  # interrupted
            assert first == {"legacy_register.id_number": 10}
            rest = await encrypt_existing(engine, master, batch=10)  # resumed
            assert rest == {"legacy_register.id_number": 15}
            again = await encrypt_existing(engine, master, batch=10)
            assert again == {"legacy_register.id_number": 0}
            cipher = (await PoolKeyring(master).load(engine)).cipher("legacy_register")
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(table.c.id_number, table.c[blind_column("id_number")]).order_by(table.c._id)
                    )
                ).all()
            assert [cipher.open("id_number", v) for v, _ in rows] == clear
            assert [b for _, b in rows] == [cipher.blind("id_number", v) for v in clear]
        finally:
            await engine.dispose()

    asyncio.run(go())  # every engine is disposed: reading the file here cannot disturb SQLite
    assert b"6101131990010100" not in (tmp_path / "legacy.db").read_bytes()
