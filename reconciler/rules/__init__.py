"""Validation rules: pure functions from a `RuleContext` to diagnostics.

`check_all` runs every rule and returns all diagnostics at once (never the first only), also over the
salvaged manifests of documents with schema errors, less what it says of a field that failed the
schema (the schema error already says it). Each rule module owns one domain of the catalog
(`reconciler.catalog`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, FieldPath
from reconciler.graph import find_cycles
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
    return out


def _about_unknown(diag: Diagnostic, unknown: dict[tuple[str, int], frozenset[FieldPath]]) -> bool:
    """Whether `diag` is about a field its document's schema errors left out (at or under it)."""
    loc = diag.location
    if loc is None:
        return False
    left_out = unknown.get((loc.file, loc.doc), frozenset())
    return any(loc.path[:n] in left_out for n in range(1, len(loc.path) + 1))


__all__ = ["RULES", "RuleContext", "check_all"]
