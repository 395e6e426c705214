"""Validation rules: pure functions from a `RuleContext` to diagnostics.

`check_all` runs every rule and returns all diagnostics at once (never the first only), also over the
salvaged manifests of documents with schema errors, less what it says of a field that failed the
schema (the schema error already says it). Each rule module owns one domain of the catalog
(`reconciler.catalog`). On adopted history (a manifest whose `ftctl.io/store-id` names a row the
Studio wrote), ftctl's stricter rules (codes from 101) and the Studio rules the Studio bypasses itself
warn instead of blocking: the row exists as the Studio wrote it, and adopting it changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, FieldPath, Severity
from reconciler.graph import find_cycles
from reconciler.models.base import STORE_ID_ANNOTATION
from reconciler.rules.configs import check_config_sources, check_configs
from reconciler.rules.context import RuleContext
from reconciler.rules.exports import check_exports
from reconciler.rules.jobs import check_evaluation_jobs, check_fine_tuning_jobs
from reconciler.rules.names import check_names
from reconciler.rules.prompts import check_prompts
from reconciler.rules.resources import check_adapters, check_datasets, check_models
from reconciler.rules.secrets import check_secrets
from reconciler.rules.values import check_integers

Rule = Callable[[RuleContext], Iterable[Diagnostic]]


def check_cycles(ctx: RuleContext) -> Iterable[Diagnostic]:
    for cycle in find_cycles(ctx.graph):
        first = ctx.named(*cycle[0])
        chain = " -> ".join(f"{k}/{n}" for k, n in [*cycle, cycle[0]])
        yield make_diag("RF-003", f"reference cycle: {chain}", location=first.location if first else None, address=f"{cycle[0][0]}/{cycle[0][1]}")


RULES: tuple[Rule, ...] = (
    check_names,
    check_datasets,
    check_models,
    check_adapters,
    check_prompts,
    check_configs,
    check_config_sources,
    check_fine_tuning_jobs,
    check_evaluation_jobs,
    check_exports,
    check_cycles,
    check_secrets,
    check_integers,
)


def check_all(ctx: RuleContext) -> list[Diagnostic]:
    unknown = {(m.location.file, m.location.doc): m.unknown for m in ctx.manifests if m.unknown}
    out: list[Diagnostic] = []
    for rule in RULES:
        out.extend(d for d in rule(ctx) if not _about_unknown(d, unknown))
    history = _adopted_history(ctx)
    return [_as_history(d) if d.address in history else d for d in out]


# The Studio's own rules that the Studio itself bypasses when it writes a row by another path: its
# axolotl training generates a prompt without input and completion templates.
STUDIO_BYPASSED = frozenset({"PR-004", "PR-005"})
HISTORY_NOTE = "adopted history: the Studio wrote this row, ftctl adopts it as it stands and runs nothing for it"


def is_stricter(code: str) -> bool:
    """ftctl's own rules, stricter than the Studio's (numbers from 101 in the Studio's domains)."""
    number = code.rpartition("-")[2]
    return number.isdigit() and int(number) >= 101


def _adopted_history(ctx: RuleContext) -> set[str]:
    """`Kind/name` of each manifest that stands for a row the Studio wrote: its `ftctl.io/store-id`
    names that row (`ftctl import` writes it), in this store or in the one it was imported from
    (applied into an empty store, the row is written again as it was)."""
    return {m.address for m in ctx.manifests if m.resource.metadata.annotations.get(STORE_ID_ANNOTATION)}


def _as_history(diag: Diagnostic) -> Diagnostic:
    """An error of ftctl's stricter rules (or a Studio rule the Studio bypasses) about a row the
    Studio already wrote warns instead of blocking: adopting it changes nothing."""
    if diag.severity is not Severity.ERROR or not (is_stricter(diag.code) or diag.code in STUDIO_BYPASSED):
        return diag
    return replace(diag, severity=Severity.WARNING, detail=f"{diag.detail}; {HISTORY_NOTE}" if diag.detail else HISTORY_NOTE)


def _about_unknown(diag: Diagnostic, unknown: dict[tuple[str, int], frozenset[FieldPath]]) -> bool:
    """Whether `diag` is about a field its document's schema errors left out (at or under it)."""
    loc = diag.location
    if loc is None:
        return False
    left_out = unknown.get((loc.file, loc.doc), frozenset())
    return any(loc.path[:n] in left_out for n in range(1, len(loc.path) + 1))


__all__ = ["RULES", "RuleContext", "check_all"]
