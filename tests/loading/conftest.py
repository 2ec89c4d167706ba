from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS
from tests.loading.support import Store, make_store


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s, drop = make_store(request.param, tmp_path_factory.mktemp(f"load-{request.param}"))
    yield s
    drop()
