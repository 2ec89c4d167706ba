"""The policy matrix (DESIGN.md section 4) as properties of what the HTTP app answers.

Hypothesis generates a catalogue entry (share/open attributes; fields with a level, a
personal-information class, a mask rule that fits their type, field-level share/open
overrides), rows of canary values, grants (listed / clear fields, expired or not) and a
probe; every caller (anonymous, enterprise with and without a grant, the provider, a
department with an SM2 key and one without) then introspects, reads, filters, orders and
looks up entities through the real app, and `checks.py` holds each answer to the oracle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, settings

from catalogue.spec import Entity, FieldSpec, FieldType
from policies.model import PI, Level, MaskRule, Open, Share, Tier
from tests.properties.checks import check_example
from tests.properties.harness import Store
from tests.properties.strategies import DatasetDraw, Example, GrantPlan, examples, field_name


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store("sqlite", tmp_path_factory.mktemp("props-sqlite"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def postgres_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store("postgres", tmp_path_factory.mktemp("props-postgres"))
    yield store
    store.close()


def _example(
    share: Share,
    open_: Open,
    *fields: FieldSpec,
    keyed_grant: GrantPlan | None = None,
    entity: Entity | None = None,
) -> Example:
    ds = DatasetDraw(share, open_, fields, entity, fields[0].name if entity else None, rows=2)
    return Example(ds, keyed_grant, None, None, probe=0, probe_row=0)


def _field(index: int = 0, **kw: Any) -> FieldSpec:
    return FieldSpec(name=field_name(index), type=kw.pop("type", FieldType.STRING), title="项", **kw)


# Examples the properties found, kept so every run replays them.
FOUND = [
    # No dataset open at all: the open tier's Query type had no field, the schema was invalid
    # and every open-tier request failed.
    _example(Share.UNCONDITIONAL, Open.NONE, _field(level=Level.L1)),
    # An open dataset none of whose fields is open: its row type had no field (same failure).
    _example(Share.UNCONDITIONAL, Open.UNCONDITIONAL, _field(level=Level.L3, mask=MaskRule.NAME)),
    # Personal, "open by law", in a dataset that is not open at all: the public never sees it,
    # yet every department got it in clear, with no grant and no mask.
    _example(Share.UNCONDITIONAL, Open.NONE, _field(level=Level.L1, pi=PI.PERSONAL, open_personal=True)),
    # The same with a mask rule: the public sees it masked, so must a department without a
    # clear grant ("L3 or pi = personal → mask unless the grant lists the field in clear").
    _example(
        Share.UNCONDITIONAL,
        Open.UNCONDITIONAL,
        _field(level=Level.L1, pi=PI.PERSONAL, open_personal=True, mask=MaskRule.NAME),
    ),
    # A field stored encrypted cannot order results, even for its provider (BAD_USER_INPUT).
    _example(
        Share.CONDITIONAL,
        Open.NONE,
        _field(level=Level.L4, pi=PI.SENSITIVE, mask=MaskRule.ID_NUMBER),
        keyed_grant=GrantPlan((field_name(0),), (field_name(0),), "future"),
        entity=Entity.PERSON,
    ),
]


def _with_found(test: Any) -> Any:
    for ex in FOUND:
        test = example(example=ex)(test)
    return test


@_with_found
@given(example=examples())  # as many examples as the profile says (conftest.py)
def test_policy_matrix_holds_over_http(sqlite_store: Store, example: Example) -> None:
    check_example(sqlite_store, sqlite_store.apply(example), example)


@pytest.mark.postgres
@settings(max_examples=20)
@given(example=examples())
def test_policy_matrix_holds_over_http_on_postgres(postgres_store: Store, example: Example) -> None:
    check_example(postgres_store, postgres_store.apply(example), example)


def test_two_grants_of_one_consumer_combine(sqlite_store: Store) -> None:
    from gateway.grants.service import create_grant
    from schema.naming import camel
    from tests.properties.harness import CALLERS, KEYED

    first, second = field_name(0), field_name(1)
    applied = sqlite_store.apply(
        _example(
            Share.CONDITIONAL,
            Open.NONE,
            _field(0, level=Level.L1),
            _field(1, level=Level.L1),
            keyed_grant=GrantPlan((first,), (), "future"),
        )
    )
    code = applied.spec.code
    sqlite_store.run(
        create_grant(
            sqlite_store.engine,
            tier=Tier.SHARE,
            dataset=code,
            consumer=KEYED,
            fields=[second],
            purpose="第二项申请",
        )
    )
    keyed = next(c for c in CALLERS if c.consumer == KEYED)
    root = camel(code)
    query = f"{{ {root}(first: 1) {{ edges {{ node {{ {camel(first)} {camel(second)} }} }} }} }}"
    node = sqlite_store.post(keyed, query).json()["data"][root]["edges"][0]["node"]
    assert node[camel(second)] == applied.cells[second][0].clear
    assert node[camel(first)] == applied.cells[first][0].clear  # the earlier grant counts too (§9)
