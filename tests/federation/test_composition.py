"""The demo's five department subgraphs compose (@apollo/composition) with no error and no
hint, and the supergraph's API schema is the share tier's schema, field for field, for the
caller whose view of the subgraphs was composed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import gql
from tests.federation.conftest import DEPARTMENTS, compose

INTROSPECTION = """{ __schema { types { kind name description
  fields { name description args { name defaultValue type { ...T } } type { ...T } }
  inputFields { name defaultValue type { ...T } } enumValues { name } } } }
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }"""


def _subgraphs(
    client: Any, token: str, via_get: bool = False, only: tuple[str, ...] = DEPARTMENTS
) -> list[dict[str, str]]:
    out = []
    for d in only:
        headers = {"Authorization": f"Bearer {token}"}
        if via_get:
            r = client.get(f"/share/subgraphs/{d}.graphql", headers=headers)
            sdl = r.text
        else:
            r = client.post(
                f"/share/subgraphs/{d}/graphql", json={"query": "{ _service { sdl } }"}, headers=headers
            )
            sdl = r.json()["data"]["_service"]["sdl"]
        assert r.status_code == 200, r.text
        out.append({"name": d, "url": f"http://node/share/subgraphs/{d}/graphql", "sdl": sdl})
    return out


def _shape(schema: dict[str, Any]) -> dict[str, Any]:
    """Types → (kind, description, fields with types, args and descriptions, input fields,
    enum values): everything a caller's introspection shows, introspection types aside."""

    def t(ref: dict[str, Any] | None) -> Any:
        return None if ref is None else (ref["kind"], ref["name"], t(ref.get("ofType")))

    out = {}
    for ty in schema["types"]:
        if ty["name"].startswith("__"):
            continue
        fields = {
            f["name"]: (
                t(f["type"]),
                f["description"],
                sorted((a["name"], t(a["type"]), a["defaultValue"]) for a in f["args"]),
            )
            for f in ty.get("fields") or []
        }
        inputs = {f["name"]: (t(f["type"]), f["defaultValue"]) for f in ty.get("inputFields") or []}
        enums = sorted(e["name"] for e in ty.get("enumValues") or [])
        out[ty["name"]] = (ty["kind"], ty["description"], fields, inputs, enums)
    return out


@pytest.mark.parametrize("caller", ["hrss", "samr"])
def test_subgraphs_compose_into_the_callers_share_schema(
    client: Any, tokens: dict[str, str], node_modules: Path, caller: str
) -> None:
    composed = compose(node_modules, _subgraphs(client, tokens[caller]))
    assert composed["errors"] == []
    assert composed["hints"] == []
    share = gql(client, "share", INTROSPECTION, token=tokens[caller]).json()["data"]["__schema"]
    api, ours = _shape(composed["apiSchema"]), _shape(share)
    assert sorted(api) == sorted(ours)
    for name in ours:
        assert api[name] == ours[name], name
    # the cross-department links the share tier serves are in the supergraph
    assert "legalRep" in api["EnterpriseRegistration"][2] and "employer" in api["SocialInsurance"][2]


def test_each_providers_own_sdl_composes(client: Any, tokens: dict[str, str], node_modules: Path) -> None:
    """GET /share/subgraphs/{dept}.graphql (the provider's own view, with its own token)."""
    subgraphs = []
    for d in DEPARTMENTS:
        subgraphs += _subgraphs(client, tokens[d], via_get=True, only=(d,))
    composed = compose(node_modules, subgraphs)
    assert composed["errors"] == [] and composed["hints"] == []


def test_a_department_without_datasets_has_a_subgraph_without_query() -> None:
    """A consumer-only department (a province department known at a city node): its subgraph
    has no root field to share, so no `Query` at all — not an empty type, not `_empty`."""
    from catalogue.service import Catalogue
    from catalogue.spec import DepartmentSpec
    from gateway.demo.catalogue import demo_catalogue
    from schema.federation import build_federated_subgraph

    departments, datasets = demo_catalogue()
    departments.append(DepartmentSpec("consumer_only", "只用数据的部门"))
    catalogue = Catalogue(1, {d.code: d for d in departments}, {d.code: d for d in datasets})
    built = build_federated_subgraph(catalogue, "consumer_only", "consumer_only")
    assert built.federation_sdl is not None
    assert "type Query" not in built.federation_sdl and "_empty" not in built.federation_sdl
    assert "_service" in built.graphql.query_type.fields  # type: ignore[union-attr]


def test_unshared_fields_and_datasets_compose_per_caller(node_modules: Path) -> None:
    """Beyond the demo (where everything is shared): with an unshared field and an unshared
    dataset, each caller's composition is still exactly its share schema — the provider sees
    its own unshared parts, every other caller does not."""
    from dataclasses import replace

    from graphql import introspection_from_schema

    from catalogue.service import Catalogue
    from gateway.demo.catalogue import demo_catalogue
    from policies.model import Share, Tier
    from schema.build import build_tier_schema
    from schema.federation import build_federated_subgraph

    departments, datasets = demo_catalogue()
    changed = []
    for ds in datasets:
        if ds.code == "enterprise_registration":  # contactPhone: 不予共享
            fields = tuple(
                replace(f, share=Share.NONE) if f.name == "contact_phone" else f for f in ds.fields
            )
            ds = replace(ds, fields=fields)
        if ds.code == "discharge_permit":  # the whole dataset: 不予共享
            ds = replace(ds, share=Share.NONE)
        changed.append(ds)
    catalogue = Catalogue(1, {d.code: d for d in departments}, {d.code: d for d in changed})
    for caller in ("samr", "eco", "hrss"):
        subgraphs = [
            {
                "name": d,
                "url": f"http://node/{d}",
                "sdl": build_federated_subgraph(catalogue, d, caller).federation_sdl,
            }
            for d in DEPARTMENTS
        ]
        composed = compose(node_modules, subgraphs)  # type: ignore[arg-type]
        assert composed["errors"] == [] and composed["hints"] == [], caller
        share = introspection_from_schema(build_tier_schema(catalogue, Tier.SHARE, caller).graphql)[
            "__schema"
        ]
        api, ours = _shape(composed["apiSchema"]), _shape(share)  # type: ignore[arg-type]
        assert api == ours, caller
        registration = api["EnterpriseRegistration"][2]
        assert ("contactPhone" in registration) is (caller == "samr")
        assert ("DischargePermit" in api) is (caller == "eco")
