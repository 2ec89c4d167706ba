"""Finding open datasets (docs/portal.md §Search): full text over names, descriptions, 信息项, keywords
and codes, with facets and stable URLs.

    GET /explore?q=空气&dept=eco            the page (its script reads the same parameters)
    GET /explore.json?q=空气&dept=eco       the machine twin: results in order, facets with counts

Why jieba and in memory: neither database tokenises Chinese out of the box (SQLite FTS5's
`unicode61` keeps a run of CJK characters as one token; PostgreSQL's default parser has no Chinese,
and zhparser / pg_jieba are C extensions a government deployment may not be allowed to install),
and the catalogue is small (hundreds to a few thousand entries), so an index built in memory per
catalogue version answers in well under a millisecond per dataset on either backend. jieba
(dictionary + HMM segmentation, pure Python) splits a query such as 「空气质量数据」 into words
(空气质量 / 数据); each word is then looked up as a substring of the dataset's text, so a word
inside a longer compound (物业 in 物业管理) still matches. A term matches a dataset when the whole
term occurs in its text, or else when at least half of its words do; every term must match.
Relevance weights where a word occurs: name ×5, keywords ×3, department and 信息项 ×2,
description and codes ×1.

Facets: `dept` (provider department code), `category` (base / theme / special), `theme` (主题), `open`
(unconditional / conditional), `cycle` (update cycle). Each facet's counts are over the results
with every *other* selected facet applied, so a person sees what choosing another value would
give. `sort`: `relevance` (default with `q`), `name`, `modified` (most recently updated first),
`used` (most calls and downloads over the last 30 days, from the public usage rollup: /stats).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.access_log import anonymous_read_event, answer_once_recorded
from gateway.explorer import UPDATE_CYCLES
from gateway.portal.budget import explorer_decision, rate_problem
from gateway.portal.usage import recent_use
from gateway.problems import Problem, problem_response
from gateway.state import GatewayState
from policies.model import CATEGORY_LABELS, OPEN_LABELS

FACETS = ("dept", "category", "theme", "open", "cycle")
SORTS = ("relevance", "name", "modified", "used")
USED_DAYS = 30  # the window of `sort=used`
MAX_QUERY = 200
STOPWORDS = frozenset(
    ["的", "了", "和", "与", "及", "或", "在", "是", "等", "有关", "相关", "数据", "信息", "查询", "的数据"]
)


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter
    jieba.initialize()
    return jieba


def words(text: str) -> list[str]:
    """A query term's words: jieba's precise segmentation, without punctuation and stopwords."""
    out = []
    for w in _jieba().cut(text.lower()):
        w = w.strip()
        if w and any(c.isalnum() for c in w) and w not in STOPWORDS:
            out.append(w)
    return out


@dataclass(frozen=True)
class Indexed:
    ds: Any  # gateway.portal.listing.OpenDataset
    weighted: tuple[tuple[str, int], ...]  # (lower-cased text, weight)
    text: str  # all of it, for matching

    def score(self, term_words: list[str]) -> int:
        return sum(weight * text.count(w) for w in term_words for text, weight in self.weighted)


def index(ds: Any) -> Indexed:
    entry = ds.entry
    parts = (
        (entry["name"] + " " + (entry.get("nameEn") or ""), 5),
        (" ".join(ds.keywords()), 3),
        (ds.department.name + " " + ds.department.code, 2),
        (" ".join(f"{f['title']} {f['name']}" for f in entry["fields"]), 2),
        (" ".join([entry.get("description") or "", ds.spec.code, ds.spec.resource_code]), 1),
    )
    weighted = tuple((t.lower(), w) for t, w in parts)
    return Indexed(ds, weighted, "\n".join(t for t, _ in weighted))


def _term_matches(item: Indexed, term: str, term_words: list[str]) -> bool:
    if term in item.text:
        return True
    if not term_words:
        return False
    found = sum(1 for w in term_words if w in item.text)
    return found * 2 >= len(term_words)


def rank(items: Iterable[Indexed], q: str) -> list[tuple[Indexed, int]]:
    """The items matching every term of `q`, with their relevance (all of them, score 0, for no q)."""
    terms = [t for t in q.lower().split() if t]
    split = [(t, words(t) or [t]) for t in terms]
    out = []
    for item in items:
        if all(_term_matches(item, t, ws) for t, ws in split):
            out.append((item, sum(item.score(ws) for _, ws in split)))
    return out


def matches(ds: Any, q: str) -> bool:
    """For the CKAN API's `q`: does this dataset match (the same rule as the page's search)?"""
    return bool(rank([index(ds)], q))


def facet_value(ds: Any, facet: str) -> str:
    if facet == "dept":
        return str(ds.department.code)
    if facet == "category":
        return str(ds.spec.category.value)
    if facet == "open":
        return str(ds.spec.open.value)
    if facet == "theme":
        return str(ds.spec.theme)
    return str(ds.spec.update_cycle)


def facet_label(ds: Any, facet: str) -> str:
    if facet == "dept":
        return str(ds.department.name)
    if facet == "category":
        return CATEGORY_LABELS[ds.spec.category]
    if facet == "open":
        return OPEN_LABELS[ds.spec.open]
    if facet == "theme":
        return str(ds.spec.theme)
    return UPDATE_CYCLES.get(ds.spec.update_cycle, ds.spec.update_cycle)


_last: tuple[list[Any], list[Indexed]] | None = None  # the index of the newest listing


def _indexed(listing: list[Any]) -> list[Indexed]:
    """Built once per listing (a catalogue change makes a new listing)."""
    global _last
    if _last is None or _last[0] is not listing:
        _last = (listing, [index(ds) for ds in listing])
    return _last[1]


def search(
    listing: list[Any],
    params: dict[str, str],
    base_path: str = "/explore",
    usage: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The search state of `params` (q, facets, sort) → results in order and facets with counts,
    each facet value with the stable URL that toggles it. `usage`: each dataset's recent calls and
    downloads, for `sort=used` (read by the caller: this function does no I/O)."""
    q = (params.get("q") or "").strip()
    if len(q) > MAX_QUERY:
        raise Problem(400, f"`q` is longer than {MAX_QUERY} characters.", "BAD_REQUEST")
    chosen = {f: params[f] for f in FACETS if params.get(f)}
    sort = params.get("sort") or ("relevance" if q else "name")
    if sort not in SORTS:
        raise Problem(400, f"`sort` is one of {', '.join(SORTS)}.", "BAD_REQUEST")
    ranked = rank(_indexed(listing), q)
    results = [(i, s) for i, s in ranked if all(facet_value(i.ds, f) == v for f, v in chosen.items())]
    if sort == "relevance":
        results.sort(key=lambda r: (-r[1], r[0].ds.entry["resourceCode"]))
    elif sort == "name":
        results.sort(key=lambda r: r[0].ds.entry["resourceCode"])
    elif sort == "used":
        used = usage or {}
        results.sort(key=lambda r: (-used.get(r[0].ds.code, 0), r[0].ds.entry["resourceCode"]))
    else:
        results.sort(key=lambda r: r[0].ds.modified.isoformat() if r[0].ds.modified else "", reverse=True)
    state = {k: v for k, v in {"q": q, **chosen, "sort": params.get("sort") or ""}.items() if v}
    facets: dict[str, list[dict[str, Any]]] = {}
    for facet in FACETS:
        others = {f: v for f, v in chosen.items() if f != facet}
        counts: dict[str, tuple[str, int]] = {}
        for item, _ in ranked:
            if all(facet_value(item.ds, f) == v for f, v in others.items()):
                value = facet_value(item.ds, facet)
                if not value:  # a dataset without a theme is not counted under an empty one
                    continue
                label, n = counts.get(value, (facet_label(item.ds, facet), 0))
                counts[value] = (label, n + 1)
        items = []
        for value, (label, n) in sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0])):
            selected = chosen.get(facet) == value
            toggled = {k: v for k, v in state.items() if k != facet}
            if not selected:
                toggled[facet] = value
            items.append(
                {
                    "value": value,
                    "label": label,
                    "count": n,
                    "selected": selected,
                    "url": base_path + ("?" + urlencode(toggled) if toggled else ""),
                }
            )
        facets[facet] = items
    return {
        "query": {"q": q, **chosen, "sort": sort},
        "url": base_path + ("?" + urlencode(state) if state else ""),
        "count": len(results),
        "results": [
            {
                "code": i.ds.code,
                "name": i.ds.entry["name"],
                "score": s,
                "department": i.ds.department.name,
                "modified": i.ds.modified.isoformat() if i.ds.modified else None,
                **({"used": usage.get(i.ds.code, 0)} if usage is not None else {}),
            }
            for i, s in results
        ],
        "facets": facets,
    }


class SearchEndpoint:
    """`GET /explore.json`: the search page's twin, on the page's budget, audited."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        from gateway.portal.listing import open_listing

        started = time.perf_counter()
        decision = await explorer_decision(self.state, request)
        codes: list[str] = []
        if not decision.allowed:
            response = problem_response(rate_problem(decision))
            if not decision.record:
                return response
            codes = ["RATE_LIMITED"]
        else:
            try:
                params = dict(request.query_params)
                usage = (
                    await recent_use(self.state.engine, USED_DAYS) if params.get("sort") == "used" else None
                )
                body = search(await open_listing(self.state), params, usage=usage)
                response = Response(
                    orjson.dumps(body), media_type="application/json", headers=decision.headers
                )
            except Problem as problem:
                response, codes = problem_response(problem), [problem.code]
        event = anonymous_read_event(request, "explorer.search", response.status_code, codes, started)
        return await answer_once_recorded(self.state.access_log, event, response)
