"""A marked field in a dataset whose entity key is stored encrypted (social_insurance, keyed by
身份证号, L4): the mark is keyed by the clear key; hrss reading through `person(idNumber:)` gets
exactly the values the published method gives. (A consumer that may not read the key in clear,
such as tax here, still gets marked values, but a leak of its rows carries no key to trace by.)"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.conftest import gql

Q = "query($i: String!) { person(idNumber: $i) { socialInsurance { contributionBase } } }"


def _truth(demo_env: Any, n: int) -> tuple[dict[str, list[Decimal]], list[Any]]:
    """Some people's stored contribution bases, and the watermark keys."""

    async def go() -> tuple[dict[str, list[Decimal]], list[Any]]:
        from sqlalchemy import text

        from catalogue.protection import load_keyring
        from gateway.db import create_engine
        from gateway.secrets import load_master_key
        from gateway.watermark_keys import load_watermark_keys

        master = load_master_key(demo_env.settings.master_key_file)
        engine = create_engine(demo_env.settings.database_url)
        try:
            cipher = (await load_keyring(engine, master, [])).cipher("social_insurance")
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT id_number, contribution_base FROM pool_social_insurance "
                            "WHERE contribution_base IS NOT NULL ORDER BY id_number__bidx"
                        )
                    )
                ).all()
            out: dict[str, list[Decimal]] = {}
            for sealed, base in rows:
                key = cipher.open("id_number", sealed)
                if key in out or len(out) < n:
                    out.setdefault(key, []).append(Decimal(str(base)))
            ring = await load_watermark_keys(engine, master)
            return out, ring.all
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_marks_keyed_by_the_clear_entity_key(client: Any, tokens: dict[str, str], demo_env: Any) -> None:
    from policies.watermark import mark_value

    # The store's watermark key is random, so whether a given person's cells are marked for a
    # given recipient is chance: ask the gateway about a dozen people, and measure how the
    # marks depend on the recipient over many more, where "fewer than 3 of 300 differ" would
    # mean the recipient is not in the key (each differs with probability about gamma).
    people, keys = _truth(demo_env, 300)
    (key,) = keys[:1]

    def marked(who: str, id_number: str) -> list[Decimal]:
        return sorted(
            mark_value(v, Decimal(1), key.secret, who, "social_insurance", "contribution_base", id_number)
            for v in people[id_number]
        )

    for id_number in list(people)[:12]:
        body = gql(client, "share", Q, variables={"i": id_number}, token=tokens["hrss"]).json()
        assert "errors" not in body, body
        got = sorted(Decimal(r["contributionBase"]) for r in body["data"]["person"]["socialInsurance"])
        assert got == marked("hrss", id_number)
    assert len(people) == 300
    differ = sum(marked("hrss", i) != marked("tax", i) for i in people)
    assert differ >= 3
