"""Value rules that hold for every kind: each integer a manifest holds fits the store (SC-005).

The store is SQLite, whose integers are signed 64-bit: a larger one (in a spec field, a resource,
an inline config body) would pass every other rule and then fail the apply with an OverflowError
part way through. Checked on the validated values, wherever they sit, so no field is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.rules.context import RuleContext

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_integers(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.manifests:
        values = {"metadata": m.resource.metadata.model_dump(), "spec": m.resource.spec.model_dump(exclude_defaults=True)}
        for path, value in _integers(values, ()):
            if not INT64_MIN <= value <= INT64_MAX:
                shown = str(value) if value.bit_length() <= 128 else f"an integer of {value.bit_length()} bits"
                dotted = ".".join(str(p) for p in path)
                yield make_diag("SC-005", f"{dotted} is {shown}", location=m.at(*path), address=m.address)


def _integers(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], int]]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _integers(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _integers(item, (*path, index))
