"""The policy matrix (DESIGN.md section 4) as properties of what the HTTP app answers.

Hypothesis generates a catalogue entry (share/open attributes; fields with a level, a
personal-information class, a mask rule that fits their type, field-level share/open
overrides), rows of canary values, grants (listed / clear fields, expired or not) and a
probe; every caller (anonymous, enterprise with and without a grant, the provider, a
department with an SM2 key and one without) then introspects, reads, filters, orders and
looks up entities through the real app, and `checks.py` holds each answer to the oracle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings

from tests.properties.checks import check_example
from tests.properties.harness import Store
from tests.properties.strategies import Example, examples


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


@settings(max_examples=60)
@given(example=examples())
def test_policy_matrix_holds_over_http(sqlite_store: Store, example: Example) -> None:
    check_example(sqlite_store, sqlite_store.apply(example), example)


@pytest.mark.postgres
@settings(max_examples=15)
@given(example=examples())
def test_policy_matrix_holds_over_http_on_postgres(postgres_store: Store, example: Example) -> None:
    check_example(postgres_store, postgres_store.apply(example), example)
