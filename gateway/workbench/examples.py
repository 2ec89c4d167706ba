"""One example query per dataset, read off the schema the caller's requests run against (the
anonymous open schema, or a department's share schema): only root fields of that schema, only
node fields it declares. Fields the caller can read without a grant come first (open tier:
`decide_open_field`; share tier: `decide_share_field` with no grant), so an example of an
unconditional dataset answers with data; a dataset that needs a grant or an approved API key
still gets an example, marked `needsGrant`, whose answer shows the refusal and its code."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from graphql import GraphQLObjectType, get_named_type, is_leaf_type

from gateway.registry import BuiltSchema
from policies import decisions
from policies.model import Action, Open, Share, Tier

FIELDS_PER_EXAMPLE = 6
PAGE = 5


@dataclass(frozen=True)
class Example:
    dataset: str  # catalogue code
    rootField: str
    name: str
    resourceCode: str
    needsGrant: bool
    note: str
    query: str


def _operation_name(root: str) -> str:
    return root[:1].upper() + root[1:]


def _readable(built: BuiltSchema, root: str, gname: str) -> bool:
    bindings = built.tier.bindings
    ds = bindings.root_datasets[root]
    spec = bindings.nodes_by_dataset[ds.code].fields[gname]
    if bindings.tier is Tier.OPEN:
        action = decisions.decide_open_field(ds.policy(), spec.policy()).action
    else:
        consumer = bindings.department or ""
        action = decisions.decide_share_field(
            ds.policy(), spec.policy(), consumer, None, can_encrypt=False
        ).action
    return action in (Action.ALLOW, Action.MASK)


def _query(root: str, title: str, fields: list[str], connection: GraphQLObjectType) -> str:
    lines = [f"# {title}", f"query {_operation_name(root)} {{", f"  {root}(first: {PAGE}) {{"]
    if "totalCount" in connection.fields:
        lines.append("    totalCount")
    lines += ["    edges {", "      node {", *(f"        {f}" for f in fields), "      }", "    }"]
    if "pageInfo" in connection.fields:
        lines.append("    pageInfo { hasNextPage endCursor }")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def examples(built: BuiltSchema) -> list[Example]:
    """An example per dataset root field of `built`, in the schema's order."""
    schema = built.tier.graphql
    bindings = built.tier.bindings
    query = schema.query_type
    if query is None:
        return []
    out = []
    for root, gfield in query.fields.items():
        ds = bindings.root_datasets.get(root)
        if ds is None:  # entity lookups (legalEntity, person) are not datasets
            continue
        connection = get_named_type(gfield.type)
        if not isinstance(connection, GraphQLObjectType) or "edges" not in connection.fields:
            continue
        edge = get_named_type(connection.fields["edges"].type)
        assert isinstance(edge, GraphQLObjectType)
        node = get_named_type(edge.fields["node"].type)
        assert isinstance(node, GraphQLObjectType)
        columns = bindings.nodes[node.name].fields
        leaves = [n for n, f in node.fields.items() if n in columns and is_leaf_type(get_named_type(f.type))]
        readable = [n for n in leaves if _readable(built, root, n)]
        chosen = (readable or leaves)[:FIELDS_PER_EXAMPLE]
        if not chosen:
            continue
        if bindings.tier is Tier.OPEN:
            needs_grant = ds.open is Open.CONDITIONAL
            note = "有条件开放：需获批企业的 API Key（X-API-Key）" if needs_grant else "无条件开放"
        else:
            own = ds.department == bindings.department
            needs_grant = not own and (ds.share is Share.CONDITIONAL or not readable)
            note = "本部门数据" if own else ("有条件共享：需经批准的授权" if needs_grant else "无条件共享")
        title = f"{ds.name} · {ds.resource_code} · {note}"
        out.append(
            Example(
                dataset=ds.code,
                rootField=root,
                name=ds.name,
                resourceCode=ds.resource_code,
                needsGrant=needs_grant,
                note=note,
                query=_query(root, title, chosen, connection),
            )
        )
    return out


def examples_document(built: BuiltSchema, endpoint: str) -> dict[str, Any]:
    """The JSON twin: `{tier, department, endpoint, examples: [...]}`."""
    bindings = built.tier.bindings
    return {
        "tier": bindings.tier.value,
        "department": bindings.department,
        "endpoint": endpoint,
        "examples": [asdict(e) for e in examples(built)],
    }
