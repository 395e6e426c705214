"""Base vs adapter, as users read it: `exact_match 0.00 → 0.88 (+0.88)`.

The plan carries each evaluation's comparisons (`Plan.evaluations`, made by `evaluations.compare`);
`ftctl status` and the apply summary show them with these functions (the markdown plan with
`by_pair` and `change_text`), and
`status --format json` carries them as numbers (`as_json`). Pure: comparisons in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from itertools import groupby
from typing import Any

from reconciler.plan import Comparison
from reconciler.views.inspection import WIDTH

TITLE = "Evaluations (base → adapter):"


def change_text(comparison: Comparison) -> str:
    """`exact_match 0.00 → 0.88 (+0.88)`."""
    c = comparison
    return f"{c.metric} {c.base:.2f} → {c.adapter:.2f} ({c.delta:+.2f})"


def evaluation_lines(comparisons: Sequence[Comparison], *, width: int = WIDTH) -> list[str]:
    """One line per evaluation and adapter: `EvaluationJob/<name>: <base> → <adapter>: <changes>`;
    one metric a line, indented, when that is wider than `width`."""
    out: list[str] = []
    for (evaluation, base, adapter), group in by_pair(comparisons):
        head = f"EvaluationJob/{evaluation}: {base} → {adapter}:"
        changes = [change_text(c) for c in group]
        line = f"{head} {', '.join(changes)}"
        out += [line] if len(line) <= width else [head, *(f"  {change}" for change in changes)]
    return out


def evaluations_text(comparisons: Sequence[Comparison], *, width: int = WIDTH) -> str:
    """The block under the status table and after an apply: a title and the lines; empty without results."""
    return "\n".join([TITLE, *evaluation_lines(comparisons, width=width)]) + "\n" if comparisons else ""


def as_json(comparisons: Sequence[Comparison]) -> list[dict[str, Any]]:
    """Each comparison with its numbers and the delta, for `status --format json`."""
    return [{**asdict(c), "delta": c.delta} for c in comparisons]


def by_pair(comparisons: Sequence[Comparison]) -> list[tuple[tuple[str, str, str], list[Comparison]]]:
    """The comparisons grouped by (evaluation, base label, adapter label), in their order."""
    return [(pair, list(group)) for pair, group in groupby(comparisons, key=_pair)]


def _pair(c: Comparison) -> tuple[str, str, str]:
    return c.evaluation, c.base_label, c.adapter_label
