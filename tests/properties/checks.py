"""What the properties assert about everything one caller gets back for one example."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import event

from catalogue.protection import is_protected
from catalogue.spec import ENTITY_KEY_NAMES, FieldSpec, FieldType
from schema.naming import camel, enum_value, pascal
from tests.properties import oracle
from tests.properties.harness import CALLERS, Applied, Store
from tests.properties.oracle import (
    ABSENT,
    CLEAR,
    DENIED,
    DS_ABSENT,
    DS_FORBIDDEN,
    DS_OK,
    ENCRYPTED,
    MASKED,
    Caller,
)
from tests.properties.strategies import Cell, Example

INTROSPECTION = """{ __schema { queryType { name } types { name description
  fields { name description args { name } } inputFields { name } enumValues { name } } } }"""
ENTITY_ROOTS = {"legal_entity": "legalEntity", "person": "person"}
WHERE_JSON = {  # the canary's stored value as a GraphQL variable
    FieldType.STRING: lambda v: v,
    FieldType.INTEGER: lambda v: v,
    FieldType.FLOAT: lambda v: v,
    FieldType.DECIMAL: str,
    FieldType.DATE: lambda v: v.isoformat(),
}
SEALED_PREFIX = "SM2-SM4-GCM."


def check_example(store: Store, applied: Applied, example: Example) -> None:
    for caller in CALLERS:
        CallerCheck(store, applied, example, caller).run()


def _codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code", "") for e in body.get("errors", [])]


class CallerCheck:
    def __init__(self, store: Store, applied: Applied, example: Example, caller: Caller) -> None:
        self.store, self.applied, self.example, self.caller = store, applied, example, caller
        spec = applied.spec
        self.spec = spec
        self.root = camel(spec.code)
        self.node_type = pascal(spec.code)
        self.rows = example.dataset.rows
        self.ds_expect = oracle.dataset_outcome(spec, caller, applied.grants, applied.now)
        self.expect = {
            f.name: oracle.field_outcomes(spec, f, caller, applied.grants, applied.now) for f in spec.fields
        }
        # Clear values this caller must never see, anywhere.
        # (A reference column holds other rows' keys: a value is restricted only if every
        # column holding it is.)
        self.restricted: set[str] = set()
        readable: set[str] = set()
        for f in spec.fields:
            canaries = {c.canary for c in applied.cells[f.name] if c.canary is not None}
            if self.ds_expect != DS_OK or CLEAR not in self.expect[f.name]:
                self.restricted |= canaries
            else:
                readable |= canaries
        self.restricted -= readable
        self.observed: dict[str, str] = {}

    def where(self) -> str:
        return f"{self.caller.name} on {self.spec.code} (dataset {self.ds_expect}, expected {self.expect})"

    def post(
        self, query: str, variables: dict[str, Any] | None = None, *, sent: set[str] | None = None
    ) -> Any:
        r = self.store.post(self.caller, query, variables)
        self.assert_no_leak(r, sent or set())
        return r

    def assert_no_leak(self, r: Any, sent: set[str]) -> None:
        """No restricted clear value in the body (raw and as decoded JSON), other than one the
        caller sent itself (an error may quote the caller's own argument back)."""
        texts = [r.text]
        with contextlib.suppress(ValueError):  # not JSON: the raw text is all there is
            texts.append(json.dumps(r.json(), ensure_ascii=False))
        for canary in self.restricted - sent:
            for text in texts:
                assert canary not in text, f"{self.where()}: restricted value {canary!r} in {text[:2000]}"

    # ------------------------------------------------------------------
    def run(self) -> None:
        present = self.introspect()
        if self.caller.consumer is None:  # anonymous: the explorer reads the same open schema
            self.explorer(present)
        if present is None:
            return
        self.absent_probe()
        if not self.data(present):
            return
        self.filter_probe(present)
        self.order_probe(present)
        self.entity_probe(present)
        self.link_probe(present)

    def introspect(self) -> set[str] | None:
        r = self.post(INTROSPECTION)
        assert r.status_code == 200, (self.where(), r.text)
        text = r.text
        schema = r.json()["data"]["__schema"]
        types = {t["name"]: t for t in schema["types"]}
        query = types[schema["queryType"]["name"]]
        self.query_fields = {f["name"] for f in query["fields"] or []}
        if self.applied.unpublished:  # withdrawn from the catalogue: gone for everyone, provider too
            assert pascal(self.applied.unpublished) not in text, (self.where(), self.applied.unpublished)
        event(f"{self.caller.name}: dataset {self.ds_expect}")
        if self.ds_expect == DS_ABSENT:
            assert self.root not in self.query_fields, self.where()
            assert self.node_type not in text, self.where()  # no type, no input, no enum of it
            for f in self.spec.fields:
                assert camel(f.name) not in text and enum_value(f.name) not in text, (self.where(), f.name)
            bad = self.post(f"{{ {self.root} {{ totalCount }} }}")
            assert bad.status_code == 400 and _codes(bad.json()) == ["GRAPHQL_VALIDATION_FAILED"], bad.text
            return None
        assert self.root in self.query_fields, self.where()
        node_fields = {f["name"] for f in types[self.node_type]["fields"] or []}
        self.node_fields = node_fields
        present = {f.name for f in self.spec.fields if camel(f.name) in node_fields}
        for f in self.spec.fields:
            expect = self.expect[f.name]
            if ABSENT not in expect:
                assert f.name in present, (self.where(), f.name)
            if expect == {ABSENT}:
                # Absent means absent: not an output field, a filter input or an ordering value.
                assert f.name not in present, (self.where(), f.name)
                assert camel(f.name) not in text and enum_value(f.name) not in text, (self.where(), f.name)
        return present

    def explorer(self, present: set[str] | None) -> None:
        """The explorer's catalogue (the page's machine twin) lists exactly the open fields,
        says which are masked, and offers filtering and ordering only on clear ones."""
        r = self.store.client.get("/explore/api/catalogue")
        assert r.status_code == 200, r.text
        self.assert_no_leak(r, set())
        listed = [d for d in r.json()["datasets"] if d["code"] == self.spec.code]
        if present is None:
            assert not listed and self.spec.resource_code not in r.text, self.where()
            return
        assert len(listed) == 1, (self.where(), listed)
        fields = {f["name"]: f for f in listed[0]["fields"]}
        assert set(fields) == {camel(n) for n in present}, (self.where(), fields)
        for f in self.spec.fields:
            entry = fields.get(camel(f.name))
            if entry is None:
                assert camel(f.name) not in r.text and enum_value(f.name) not in r.text, (
                    self.where(),
                    f.name,
                )
                continue
            (treatment,) = self.expect[f.name]  # the open tier's answers are all fixed
            assert entry["masked"] is (treatment == MASKED), (self.where(), f.name, entry)
            if treatment != CLEAR:
                assert not entry["operators"] and entry["orderBy"] is None, (self.where(), f.name, entry)

    def absent_probe(self) -> None:
        """Asking for a field that does not exist is a validation error that quotes nothing."""
        absent = [f for f in self.spec.fields if self.expect[f.name] == {ABSENT}]
        if not absent:
            return
        gql = camel(absent[0].name)
        r = self.post(f"{{ {self.root}(first: 3) {{ edges {{ node {{ {gql} }} }} }} }}")
        assert r.status_code == 400 and _codes(r.json()) == ["GRAPHQL_VALIDATION_FAILED"], (
            self.where(),
            r.text,
        )

    def selection(self, present: set[str]) -> str:
        names = [camel(f.name) for f in self.spec.fields if f.name in present]
        return " ".join(names) or "__typename"

    def data(self, present: set[str]) -> bool:
        """The unfiltered read: every value in the form the matrix says. True when rows came back."""
        q = f"{{ {self.root}(first: 10) {{ totalCount edges {{ node {{ {self.selection(present)} }} }} }} }}"
        r = self.post(q)
        assert r.status_code == 200, (self.where(), r.text)
        body = r.json()
        if self.ds_expect == DS_FORBIDDEN:
            assert body["data"][self.root] is None, (self.where(), body)
            codes = _codes(body)
            assert codes and set(codes) <= {"FORBIDDEN", "FORBIDDEN_FIELD"}, (self.where(), body)
            assert all(e["extensions"]["resourceCode"] == self.spec.resource_code for e in body["errors"])
            return False
        conn = body["data"][self.root]
        assert conn is not None, (self.where(), body)
        assert conn["totalCount"] == self.rows and len(conn["edges"]) == self.rows, (self.where(), body)
        denied_paths = {
            tuple(e["path"]) for e in body.get("errors", []) if e["extensions"]["code"] == "FORBIDDEN_FIELD"
        }
        assert set(_codes(body)) <= {"FORBIDDEN_FIELD"}, (self.where(), body)
        for f in self.spec.fields:
            if f.name not in present:
                continue
            seen = {
                self.classify(
                    f,
                    self.applied.cells[f.name][i],
                    conn["edges"][i]["node"],
                    (self.root, "edges", i, "node"),
                    denied_paths,
                )
                for i in range(self.rows)
            }
            assert len(seen) == 1, (self.where(), f.name, seen, body)
            observed = seen.pop()
            assert observed in self.expect[f.name], (self.where(), f, observed, body)
            self.observed[f.name] = observed
            event(f"{self.caller.tier.value}: {observed}")
        expected_errors = {
            (self.root, "edges", i, "node", camel(n))
            for n, o in self.observed.items()
            if o == DENIED
            for i in range(self.rows)
        }
        assert denied_paths == expected_errors, (self.where(), body)
        return True

    def classify(
        self,
        f: FieldSpec,
        c: Cell,
        node: dict[str, Any],
        path: tuple[Any, ...],
        denied_paths: set[tuple[Any, ...]],
    ) -> str:
        gql = camel(f.name)
        value = node[gql]
        if value is None:
            assert (*path, gql) in denied_paths, (self.where(), f.name, "null without FORBIDDEN_FIELD")
            return DENIED
        if value == c.clear and type(value) is type(c.clear):
            return CLEAR
        if c.masked is not None and value == c.masked:
            return MASKED
        if isinstance(value, str) and value.startswith(SEALED_PREFIX):
            if self.caller.has_sm2_key:
                from gateway.crypto.encryption import decrypt_field

                key = self.store.credentials["keyed_private_key"]
                assert decrypt_field(key, value, self.spec.code, f.name) == str(c.clear), (
                    self.where(),
                    f.name,
                )
            return ENCRYPTED
        raise AssertionError(f"{self.where()}: {f.name} = {value!r}, neither {c.clear!r} nor {c.masked!r}")

    def _probe_field(self, present: set[str]) -> FieldSpec | None:
        candidates = [f for f in self.spec.fields if f.name in present and f.type is not FieldType.BOOLEAN]
        return candidates[self.example.probe % len(candidates)] if candidates else None

    def filter_probe(self, present: set[str]) -> None:
        """`where` on a field is accepted only if the caller may know the field in clear,
        whatever the operator; a field stored encrypted is matched by equality only."""
        f = self._probe_field(present)
        if f is None:
            return
        c = self.applied.cells[f.name][self.example.probe_row % self.rows]
        op = self.example.probe_op
        if op == "prefix" and f.type is not FieldType.STRING:
            op = "eq"
        value = WHERE_JSON[f.type](c.stored)
        operand = {"in": [value], "isNull": False}.get(op, value)
        q = (
            f"query($w: {self.node_type}Where) {{ {self.root}(first: 10, where: $w) "
            f"{{ totalCount edges {{ node {{ {self.selection(present)} }} }} }} }}"
        )
        r = self.post(q, {"w": {camel(f.name): {op: operand}}}, sent={c.canary or ""})
        body = r.json()
        observed = self.observed[f.name]
        why = (self.where(), f.name, op, observed, body)
        if not oracle.may_filter(observed):
            assert (body.get("data") or {}).get(self.root) is None, why
            assert _codes(body) == ["FORBIDDEN_FILTER"], why
            return
        if is_protected(f) and op not in ("eq", "neq", "in", "isNull"):
            assert (body.get("data") or {}).get(self.root) is None and _codes(body) == ["BAD_USER_INPUT"], why
            return
        assert r.status_code == 200 and not set(_codes(body)) - {"FORBIDDEN_FIELD"}, why
        expected = {"eq": 1, "in": 1, "prefix": 1, "neq": self.rows - 1, "isNull": self.rows}.get(op)
        if expected is not None:  # (gt compares in the database's collation: not counted here)
            assert body["data"][self.root]["totalCount"] == expected, why

    def order_probe(self, present: set[str]) -> None:
        """`orderBy` reveals order, so it too needs the field in clear. A field stored
        encrypted (L4 / sensitive) cannot order results for anyone, provider included."""
        f = self._probe_field(present)
        if f is None:
            return
        q = (
            f"{{ {self.root}(first: 10, orderBy: [{{field: {enum_value(f.name)}, direction: DESC}}]) "
            f"{{ edges {{ node {{ {self.selection(present)} }} }} }} }}"
        )
        r = self.post(q)
        body = r.json()
        observed = self.observed[f.name]
        refused = r.status_code != 200 or (body.get("data") or {}).get(self.root) is None
        if observed == CLEAR and not is_protected(f):
            assert not refused and not set(_codes(body)) - {"FORBIDDEN_FIELD"}, (self.where(), f.name, body)
            assert len(body["data"][self.root]["edges"]) == self.rows
            return
        assert refused, (self.where(), f.name, observed, body)
        expected = {"FORBIDDEN_FILTER"} if observed in (MASKED, DENIED) else {"BAD_USER_INPUT"}
        assert set(_codes(body)) == expected, (self.where(), f.name, observed, body)

    def entity_probe(self, present: set[str]) -> None:
        """The same fields reached through an entity (legalEntity / person) get the same
        treatment; looking an entity up by a key the caller may not know in clear is denied."""
        spec = self.spec
        if spec.entity is None or spec.entity_field is None:
            return
        root = ENTITY_ROOTS[spec.entity.value]
        assert (root in self.query_fields) == (spec.entity_field in present), (self.where(), root)
        if root not in self.query_fields:
            return
        row = self.example.probe_row % self.rows
        c = self.applied.cells[spec.entity_field][row]
        arg = camel(ENTITY_KEY_NAMES[spec.entity])
        sel = self.selection(present)
        q = f"query($k: String!) {{ {root}({arg}: $k) {{ {self.root}(first: 5) {{ {sel} }} }} }}"
        r = self.post(q, {"k": c.stored}, sent={c.canary or ""})
        assert r.status_code == 200, (self.where(), r.text)
        body = r.json()
        rows = (body["data"][root] or {}).get(self.root)
        if self.observed.get(spec.entity_field) not in (CLEAR, ENCRYPTED):
            assert rows is None, (self.where(), body)
            assert set(_codes(body)) <= {"FORBIDDEN", "FORBIDDEN_FIELD"} and _codes(body), (
                self.where(),
                body,
            )
            return
        assert rows is not None and len(rows) == 1, (self.where(), body)
        denied = {
            tuple(e["path"]) for e in body.get("errors", []) if e["extensions"]["code"] == "FORBIDDEN_FIELD"
        }
        for f in spec.fields:
            if f.name in present:
                got = self.classify(f, self.applied.cells[f.name][row], rows[0], (root, self.root, 0), denied)
                assert got == self.observed[f.name], (self.where(), f.name, got, body)

    def link_probe(self, present: set[str]) -> None:
        """Following a reference reveals its value, so only a reference read in clear may be
        followed; the rows reached through it are treated as everywhere else."""
        spec = self.spec
        ref = next((f for f in spec.fields if f.references is not None), None)
        if ref is None or ref.references is None or ref.link_name is None:
            return
        link = camel(ref.link_name)
        # offered where the column is and the entity exists for this caller
        offered = ref.name in present and ENTITY_ROOTS[ref.references.value] in self.query_fields
        assert (link in self.node_fields) == offered, (self.where(), link)
        if not offered:
            return
        event(f"link offered to {self.caller.tier.value}, reference {self.observed[ref.name]}")
        key_field = spec.entity_field or ""
        sel = self.selection(present)
        q = (
            f"{{ {self.root}(first: 10) {{ edges {{ node {{ {link} "
            f"{{ {self.root}(first: 5) {{ {sel} }} }} }} }} }} }}"
        )
        r = self.post(q)
        assert r.status_code == 200, (self.where(), r.text)
        body = r.json()
        why = (self.where(), body)
        errors = {tuple(e["path"]): e["extensions"]["code"] for e in body.get("errors", [])}
        denied = {p for p, code in errors.items() if code == "FORBIDDEN_FIELD"}
        for i, edge in enumerate(body["data"][self.root]["edges"]):
            path = (self.root, "edges", i, "node", link)
            target = edge["node"][link]
            if self.observed[ref.name] != CLEAR:
                assert target is None and path in denied, why
                continue
            assert target is not None, why
            rows = target[self.root]
            if self.observed.get(key_field) not in (CLEAR, ENCRYPTED):
                assert rows is None and (*path, self.root) in denied, why
                continue
            assert rows is not None and len(rows) == 1, why
            row = (i + 1) % self.rows
            for f in spec.fields:
                if f.name in present:
                    at = (*path, self.root, 0)
                    got = self.classify(f, self.applied.cells[f.name][row], rows[0], at, denied)
                    assert got == self.observed[f.name], (self.where(), f.name, got, body)
