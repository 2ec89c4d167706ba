"""Field and dataset decisions: DESIGN.md section 4 as pure functions.

Deny by default: every branch that is not explicitly allowed ends in DENY. A grant can
widen the default for its consumer; nothing a caller sends can.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from policies.model import (
    PI,
    Action,
    DatasetAccess,
    DatasetPolicy,
    Decision,
    FieldPolicy,
    Grant,
    GrantSet,
    Level,
    Open,
    Share,
    Tier,
    Treatment,
)


def field_share(dataset: DatasetPolicy, field: FieldPolicy) -> Share:
    return field.share if field.share is not None else dataset.share


def field_open(dataset: DatasetPolicy, field: FieldPolicy) -> Open:
    return field.open if field.open is not None else dataset.open


# ---------------------------------------------------------------- open tier


def open_dataset_listed(dataset: DatasetPolicy) -> bool:
    """In the open schema and the explorer's catalogue at all?"""
    return dataset.published and dataset.open is not Open.NONE


def open_field_exists(dataset: DatasetPolicy, field: FieldPolicy) -> bool:
    """Whether a field exists in the open schema. Fields that fail this are not merely
    hidden: they are absent from the schema and its introspection."""
    if field_open(dataset, field) is Open.NONE:
        return False
    if field.level > Level.L2 or field.pi is PI.SENSITIVE:
        return False
    return field.pi is not PI.PERSONAL or field.open_personal


def decide_open_field(
    dataset: DatasetPolicy, field: FieldPolicy, grant: GrantSet | Grant | None = None
) -> Decision:
    """The action for one open-tier field. `grant` is the caller's combined grants on a
    conditionally open dataset (None: the public view, e.g. the explorer's). A grant that
    lists no field grants the whole open view; one that lists fields grants only those,
    and the rest are denied (FORBIDDEN_FIELD)."""
    if not open_field_exists(dataset, field):
        return Decision(Action.DENY, "not open: classification or open attribute forbids it")
    grants = _as_set(grant)
    grant_id: int | None = None
    if grants is not None:
        if not grants.whole_view and field.name not in grants.fields:
            return Decision(Action.DENY, "conditionally open: field is not in an approved grant")
        grant_id = grants.decided_by(field.name) or next(g.id for g in grants.grants if not g.fields)
    if field.pi is PI.PERSONAL and field.mask is not None:
        return Decision(
            Action.MASK, "personal information opened in masked form", mask=field.mask, grant_id=grant_id
        )
    return Decision(Action.ALLOW, "open data", grant_id=grant_id)


def open_dataset_access(
    dataset: DatasetPolicy, consumer: str | None, grants: Iterable[Grant], now: datetime
) -> DatasetAccess:
    """Data access for an anonymous caller (consumer None) or an enterprise."""
    if not open_dataset_listed(dataset):
        return DatasetAccess(False, "dataset is not open")
    if dataset.open is Open.UNCONDITIONAL:
        return DatasetAccess(True, "unconditionally open")
    if consumer is None:
        return DatasetAccess(False, "conditionally open: an API key with an approved grant is required")
    grant = combine_grants(grants, dataset.code, consumer, Tier.OPEN, now)
    if grant is None or not grant.grants:
        return DatasetAccess(False, "conditionally open: no approved, unexpired grant for this API key")
    return DatasetAccess(True, "conditionally open under grant", grant=grant)


# ---------------------------------------------------------------- share tier


def share_dataset_listed(dataset: DatasetPolicy, consumer: str) -> bool:
    """Whether a dataset exists in department `consumer`'s share schema."""
    if not dataset.published:
        return False
    return dataset.share is not Share.NONE or dataset.provider == consumer


def share_field_exists(dataset: DatasetPolicy, field: FieldPolicy, consumer: str) -> bool:
    return dataset.provider == consumer or field_share(dataset, field) is not Share.NONE


def share_dataset_access(
    dataset: DatasetPolicy, consumer: str, grants: Iterable[Grant], now: datetime
) -> DatasetAccess:
    if not share_dataset_listed(dataset, consumer):
        return DatasetAccess(False, "dataset is not shared")
    if dataset.provider == consumer:
        return DatasetAccess(True, "provider reads its own data")
    # rows come from the grants only where nothing else opens them (a conditional dataset)
    grant = combine_grants(
        grants, dataset.code, consumer, Tier.SHARE, now, rows_from_grants=dataset.share is Share.CONDITIONAL
    )
    if grant is not None and not grant.grants:  # every grant scoped to rows it cannot limit here
        grant = None
    if dataset.share is Share.UNCONDITIONAL:
        return DatasetAccess(True, "unconditionally shared", grant=grant)
    if grant is None:
        return DatasetAccess(False, "conditionally shared: no approved, unexpired grant")
    return DatasetAccess(True, "conditionally shared under grant", grant=grant)


def decide_share_field(
    dataset: DatasetPolicy,
    field: FieldPolicy,
    consumer: str,
    grant: GrantSet | Grant | None,
    *,
    can_encrypt: bool,
) -> Decision:
    """The action for one field for one consuming department.

    `grant` must already be the consumer's active grants for this dataset, combined
    (`combine_grants`), or None; `can_encrypt` says whether the consumer has a registered
    SM2 key and encryption is on. A decision made under a grant names the grant whose
    treatment of the field applied (`GrantSet.decided_by`); fields no grant lists name none.
    """
    if dataset.provider == consumer:
        return Decision(Action.ALLOW, "provider reads its own data")
    share = field_share(dataset, field)
    if share is Share.NONE or dataset.share is Share.NONE:
        return Decision(Action.DENY, "field is not shared")
    grants = _as_set(grant)
    treatment = grants.treatment(field.name) if grants is not None else None
    grant_id = grants.decided_by(field.name) if grants is not None else None
    listed = treatment is not None
    conditional = share is Share.CONDITIONAL or dataset.share is Share.CONDITIONAL
    if conditional and not listed:
        if grants is not None and any(field.name in g.fields for g in grants.withheld):
            return Decision(
                Action.DENY,
                "granted for some rows only (a row scope), and this read is not limited to them: "
                "another grant or the dataset itself opens every row",
            )
        return Decision(Action.DENY, "conditionally shared: field is not in an approved grant")
    if field.level >= Level.L4 or field.pi is PI.SENSITIVE:
        # Whatever the grant says (even clear), never less protected than encrypted.
        if not listed:
            return Decision(Action.DENY, "L4 / sensitive personal information needs a grant listing it")
        if not can_encrypt:
            return Decision(
                Action.DENY,
                "granted, but delivered only encrypted to the department's registered SM2 key, "
                "and none is available",
                grant_id=grant_id,
            )
        return Decision(Action.ENCRYPT, "granted; encrypted to the consumer's SM2 key", grant_id=grant_id)
    if (
        field.pi is PI.PERSONAL
        and field.mask is None
        and open_dataset_listed(dataset)
        and open_field_exists(dataset, field)
    ):
        # Published in clear on the open tier (法定代表人, open by law, no mask rule): a
        # department never sees less than the public. Where the public sees the field masked,
        # or not at all, it is personal information like any other (masked or denied below).
        return Decision(Action.ALLOW, "personal information public by law", grant_id=grant_id)
    if field.level >= Level.L3 or field.pi is PI.PERSONAL:
        if treatment is Treatment.CLEAR:
            return Decision(Action.ALLOW, "granted in clear", grant_id=grant_id)
        if field.mask is None:
            return Decision(Action.DENY, "L3 / personal field with no masking rule", grant_id=grant_id)
        overruled = grants is not None and any(
            g.treatment(field.name) is Treatment.CLEAR for g in grants.grants
        )
        reason = (
            "granted in clear by one grant but masked by another: the strictest applies"
            if overruled
            else "L3 / personal information is masked"
        )
        return Decision(Action.MASK, reason, mask=field.mask, grant_id=grant_id)
    return Decision(Action.ALLOW, "L1–L2 shared data", grant_id=grant_id)


# ---------------------------------------------------------------- shared helpers


def combine_grants(
    grants: Iterable[Grant],
    dataset: str,
    consumer: str,
    tier: Tier,
    now: datetime,
    *,
    rows_from_grants: bool = True,
) -> GrantSet | None:
    """The consumer's active grants on a dataset and tier, combined; None when it has none.

    Several grants add up (union of fields, strictest treatment per field, see GrantSet):
    never "the newest replaces". Expired, pending and revoked grants do not count.
    `rows_from_grants`: the rows are read because of these grants (a conditional dataset), so
    their row scopes may limit them (`GrantSet.rows`).
    """
    mine = [
        g
        for g in grants
        if g.dataset == dataset and g.consumer == consumer and g.tier is tier and g.active(now)
    ]
    return GrantSet.of(*mine, rows_from_grants=rows_from_grants) if mine else None


def _as_set(grant: GrantSet | Grant | None) -> GrantSet | None:
    return GrantSet.of(grant) if isinstance(grant, Grant) else grant


def may_filter(decision: Decision) -> bool:
    """Filtering or ordering on a field reveals its clear value (by probing), so only
    fields the caller may know in clear can be filtered on: allowed ones and those the
    consumer receives encrypted to its own key."""
    return decision.action in (Action.ALLOW, Action.ENCRYPT)
