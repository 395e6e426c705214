"""What a ModelExport's `select:` chose, in words: the adapter, its score and the others' (or the
adapters not scored yet). Rendered from `Change.chosen` (`plan.Choice`) by the plan views."""

from __future__ import annotations

from reconciler.plan import Choice

LISTED = 8  # candidates named; the rest are counted


def choice_text(choice: Choice) -> str:
    """`selected demo-lr0p01 by rougeL (max): 0.97; others: demo-lr0p001 0.41` or, while results
    are missing, `select by rougeL (max) waits for the scores of demo-lr0p001 (1 of 2 scored)`."""
    how = f"{choice.metric} ({choice.mode}) of EvaluationJob/{choice.evaluation}"
    if not choice.adapter:
        waiting = _listed(choice.pending)
        scored = len(choice.scores)
        return f"select by {how} waits for the scores of {waiting} ({scored} of {scored + len(choice.pending)} scored)"
    others = [f"{name} {value:.4g}" for name, value in choice.scores.items() if name != choice.adapter]
    rest = f"; others: {_listed(others)}" if others else ""
    return f"selected {choice.adapter} by {how}: {choice.scores[choice.adapter]:.4g}{rest}"


def _listed(items: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")
