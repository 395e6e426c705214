"""Row diffs, the planner's second step: a desired object's rows against the live rows it pairs
with, as field diffs and digests of the owned columns.

Pure. One-row objects pair with their one live row; an object that fans out into rows (each
desired row keyed by its item, as an evaluation's combinations are) pairs row by row on that key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reconciler.desired import RUN_INPUT_COLUMNS, Desired, DesiredRow
from reconciler.kinds import BINDINGS
from reconciler.plan import Change, FieldDiff, RowOp
from reconciler.records import JSON_COLUMNS, Row, as_shown, comparable, digest


def fans_out(desired: Desired) -> bool:
    """Whether the object's rows are one per item, keyed (its rows pair with live rows by key)."""
    return any(r.key for r in desired.rows)


def spec_diffs(before: dict[str, Any] | None, desired: Desired) -> tuple[FieldDiff, ...]:
    """For kinds without Studio rows: what changed in the resolved spec since it was applied."""
    if desired.rows or before is None:
        return ()
    after = desired.spec
    return tuple(FieldDiff(f"spec.{k}", before.get(k), after.get(k), True) for k in dict.fromkeys([*before, *after])
                 if before.get(k) != after.get(k))


def readable(change: Change) -> Change:
    """Field diffs as people read them: JSON columns parsed, and compared key by key (a secret's
    value is masked already, so a change between two masked values shows as the column's)."""
    out: list[FieldDiff] = []
    for diff in change.fields:
        table, _, column = diff.path.partition(".")
        if column not in JSON_COLUMNS.get(table, ()):
            out.append(diff)
            continue
        before, after = as_shown(table, column, diff.before), as_shown(table, column, diff.after)
        if isinstance(before, dict) and isinstance(after, dict):
            keys = [k for k in dict.fromkeys([*before, *after]) if before.get(k, _ABSENT) != after.get(k, _ABSENT)]
            out.extend(FieldDiff(f"{diff.path}.{k}", before.get(k), after.get(k), diff.forces_replace) for k in keys)
            if not keys:
                out.append(diff)
        else:
            out.append(FieldDiff(diff.path, before, after, diff.forces_replace))
    return replace(change, fields=tuple(out)) if out != list(change.fields) else change


_ABSENT = object()


def with_parent(desired: Desired, parent: str) -> Desired:
    """A fan-out's rows, each carrying `parent` (the object's new id) in its owner column."""
    owner = BINDINGS[desired.kind].owner_column
    rows = tuple(DesiredRow(r.table, r.key, {**r.values, owner: parent}) for r in desired.rows)
    return Desired(desired.kind, desired.name, desired.table, rows, desired.spec, desired.depends_on, desired.waits_for)


def without_history(desired: Desired) -> Desired:
    """The rows without the columns a job's run fills (`Binding.history_columns`: the run's CML job,
    results folder, registered adapter): what ftctl writes and compares for a generation it runs."""
    history = set(BINDINGS[desired.kind].history_columns) if desired.kind in BINDINGS else set()
    if not any(history & set(r.values) for r in desired.rows):
        return desired
    rows = tuple(replace(r, values={c: v for c, v in r.values.items() if c not in history}) for r in desired.rows)
    return replace(desired, rows=rows)


def with_columns_as(desired: Desired, live: dict[str, Row | None], columns: frozenset[str], *, drop: bool = False) -> Desired:
    """The rows with `columns` as the paired live rows have them (or, with `drop`, left out: as
    a render that omitted them wrote them): what a record's fingerprint saw before they changed."""
    paired = pair_live(desired, live)

    def values(row: DesiredRow) -> Row:
        kept = {c: v for c, v in row.values.items() if not (drop and c in columns)}
        found = paired.get(row.key)
        if drop or found is None:
            return kept
        return {c: (found.get(c) if c in columns else v) for c, v in kept.items()}

    return replace(desired, rows=tuple(replace(r, values=values(r)) for r in desired.rows))


def update_ops(desired: Desired, live: dict[str, Row | None], columns: list[str]) -> tuple[RowOp, ...]:
    """The in-place updates that give each paired live row the desired values of `columns` it lacks."""
    paired = pair_live(desired, live)
    ops = []
    for drow in desired.rows:
        lrow = paired.get(drow.key)
        if lrow is None:
            continue
        want, have = drow.comparable, comparable(drow.table, lrow)
        changed = {c: drow.values[c] for c in columns if c in drow.values and want[c] != have[c]}
        if changed:
            ops.append(RowOp(drow.table, "update", str(lrow["id"]), changed))
    return tuple(ops)


def run_inputs(desired: Desired) -> str:
    columns = RUN_INPUT_COLUMNS.get(desired.table)
    if columns is None:
        return digest([r.values for r in desired.rows] + [desired.spec])
    return digest([r.comparable.get(c) for r in desired.rows for c in columns])


def pair_live(desired: Desired, live: dict[str, Row | None]) -> dict[str, Row]:
    """Desired row key -> live row: single rows by position, fan-out rows by their item key
    (`Binding.row_key`: an evaluation's (model, adapter))."""
    rows = [r for r in live.values() if r is not None]
    if not fans_out(desired):
        return {desired.rows[0].key: rows[0]} if desired.rows and rows else {}
    return {BINDINGS[desired.kind].row_key(r): r for r in rows}


def field_diffs(desired: Desired, live: dict[str, Row | None], *, only: tuple[str, ...] | None) -> tuple[FieldDiff, ...]:
    paired = pair_live(desired, live)
    out: list[FieldDiff] = []
    for drow in desired.rows:
        lrow = paired.get(drow.key)
        if lrow is None:
            out.append(FieldDiff(f"{drow.table}.row", None, drow.key or "row", True))
            continue
        want, have = drow.comparable, comparable(drow.table, lrow)
        for column in drow.values:
            if only is not None and column not in only:
                continue
            if want[column] != have[column]:
                out.append(FieldDiff(f"{drow.table}.{column}", lrow.get(column), drow.values[column]))
    if fans_out(desired) and len(paired) > len(desired.rows):
        out.append(FieldDiff(f"{desired.table}.row", "extra combinations", None, True))
    return tuple(out)


def rows_fp(
    desired: Desired,
    live: dict[str, Row | None] | dict[str, Row],
    *,
    only: tuple[str, ...] | None = None,
    compare: Callable[[str, Row], Row] = comparable,
) -> str:
    """Digest of the owned columns: of the desired rows (when `live` is empty) or of the live rows."""
    if not desired.rows:
        return digest(desired.spec)
    paired = pair_live(desired, dict(live)) if live else None
    out: list[Any] = []
    for drow in desired.rows:
        row = paired.get(drow.key) if paired is not None else drow.values
        if row is None:
            out.append(None)
            continue
        values = drow.comparable if paired is None else compare(drow.table, row)
        columns = [c for c in drow.values if only is None or c in only]
        out.append([drow.key, [values[c] for c in columns]])
    return digest(out)
