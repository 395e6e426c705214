"""One Studio binding per kind (`reconciler.kinds.<kind>.BINDING`), and the generic code over them.

Pure core, below the planner and above the manifest models and `records`. `render_rows` reads a
binding manifest → rows (desired.render calls it), `import_spec` reads the same binding row →
manifest (the importer calls it): one declaration, two directions. Each kind module also offers
small named accessors for what other stages read of its rows (`fine_tuning_job.adapter_name(row)`),
so that no module outside `kinds/` needs to name a Studio column (tests/unit/test_kinds_ownership.py
checks it). What the planner and the job stages need per kind (delete order, content addressing,
what a job produces, the columns recording its run and results, who references its rows:
`referrers`, `product_link`, `run_note`) is read from the same bindings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from reconciler.kinds import (
    adapter,
    config,
    dataset,
    evaluation_job,
    fine_tuning_job,
    model,
    model_export,
    prompt,
)
from reconciler.kinds.base import (
    ABSENT,
    OMIT,
    Binding,
    Column,
    ImportContext,
    RenderContext,
    Rendering,
    field_value,
    import_value,
    inexpressible,
    render_column,
    set_path,
)
from reconciler.records import Row

BINDINGS: dict[str, Binding] = {
    b.kind: b
    for b in (dataset.BINDING, model.BINDING, prompt.BINDING, adapter.BINDING, config.BINDING,
              fine_tuning_job.BINDING, evaluation_job.BINDING, model_export.BINDING)
}
BY_TABLE: dict[str, Binding] = {b.table: b for b in BINDINGS.values() if b.table}
KIND_TABLE: dict[str, str] = {b.kind: b.table for b in BINDINGS.values() if b.table}
# Import order: what others reference first.
TABLE_ORDER = ("datasets", "models", "configs", "prompts", "fine_tuning_jobs", "adapters", "evaluation_jobs")
STORE_ID = "store_id"  # an item's field holding its row's id (evaluation combinations)


def product_link(kind: str) -> str:
    """The column of the rows `kind`'s job registers that names the job's row ('' when it registers none)."""
    produced = BINDINGS.get(BINDINGS[kind].produces) if kind in BINDINGS else None
    return next((r.column for r in produced.references if r.kind == kind), "") if produced else ""


def product_name(manifest: Any) -> str:
    """What the job of a producing kind's manifest registers its product as (a training's adapter
    name: the manifest's value for the job row's name column, the manifest's name when left out)."""
    binding = BINDINGS.get(manifest.kind)
    if binding is None or not binding.produces:
        return ""
    column = binding.column(binding.name_column)
    value = field_value(manifest.resource.spec, column.path)
    return manifest.name if (value is ABSENT or value is None) and column.named else str(value or "")


def referrers(kind: str) -> tuple[tuple[str, str], ...]:
    """(table, column) of the rows that reference `kind`'s rows (no delete while they do); a job's
    product naming the job that registered it is no use of the job."""
    return tuple((b.table, r.column) for b in BINDINGS.values() for r in b.references
                 if r.kind == kind and b.kind != BINDINGS[kind].produces)


def run_note(table: str, job_id: str, results_dir: str | None = None) -> Row:
    """What a job's launch writes into the Studio row that records it: the job (`run_column`) and,
    for kinds whose results the Studio's pages read, the folder they are written to."""
    binding = BY_TABLE[table]
    results = {binding.results_column: results_dir} if binding.results_column and results_dir else {}
    return {binding.run_column: job_id, **results}


@dataclass(frozen=True)
class RenderedRow:
    key: str  # pairs the row with a live row of the same object ('' for one-row kinds)
    values: Row  # owned columns, in the Studio's storage form; no id
    row_id: str | None = None  # the id the manifest declares for the row (a combination's store_id)


def render_rows(binding: Binding, manifest: Any, scope: RenderContext, *, own_id: str) -> list[RenderedRow]:
    """The rows of one manifest: one, or one per item of a fan-out."""
    spec = manifest.resource.spec
    for path, kind in binding.extra_refs:
        value = field_value(spec, path)
        if value is not ABSENT and value is not None:
            scope.ref_id(value, kind)  # a dependency without a column
    shared = Rendering(manifest, spec, scope)
    if not binding.items:
        return [RenderedRow("", _values(binding, shared, None, own_id))]
    out = []
    for item in getattr(spec, binding.items[0]) or ():
        values = _values(binding, shared, Rendering(manifest, item, scope), own_id)
        out.append(RenderedRow(binding.row_key(values), values, getattr(item, STORE_ID, None)))
    return out


def _values(binding: Binding, shared: Rendering, item: Rendering | None, own_id: str) -> Row:
    values: Row = {}
    for column in binding.columns:
        value = _rendered(column, shared, item, own_id)
        if value is not OMIT:
            values[column.name] = value
    return values


def _rendered(column: Column, shared: Rendering, item: Rendering | None, own_id: str) -> Any:
    if column.derived == "name":
        return shared.manifest.name
    if column.derived == "owner":
        return own_id
    if not column.path or column.codec is None:
        return OMIT  # the row's id (the planner's), or a column ftctl never writes
    return render_column(column, item if column.per_item and item is not None else shared)


def import_spec(binding: Binding, rows: list[Row], c: ImportContext, *, history: bool) -> dict[str, Any]:
    """The spec of the manifest that renders back to `rows` (history columns only when `history`:
    runs that happened outside ftctl). Per-item columns fan out into the item list."""
    first = replace(c, row=rows[0])
    spec = _fields(binding, rows[0], first, per_item=False, history=history)
    if binding.items:
        item_model = _item_model(binding)
        items = []
        for row in rows:
            one = _fields(binding, row, replace(c, row=row), per_item=True, history=history, model=item_model)
            if history:
                one[STORE_ID] = str(row["id"])
            items.append(one)
        spec[binding.items[0]] = items
    return spec


def _fields(binding: Binding, row: Row, c: ImportContext, *, per_item: bool, history: bool, model: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in binding.columns:
        if not column.path or column.codec is None or column.per_item != per_item or (column.history and not history):
            continue
        value = import_value(column, row.get(column.name), c, model=model if per_item else binding.spec_model)
        if value is not ABSENT:
            set_path(out, column.path, value)
    return out


def _item_model(binding: Binding) -> Any:
    assert binding.spec_model is not None
    annotation = binding.spec_model.model_fields[binding.items[0]].annotation
    return getattr(annotation, "__args__", (None,))[0]


def lost_columns(binding: Binding, rows: list[Row]) -> list[str]:
    """Columns of the rows that hold a value no manifest field carries (a lossy import)."""
    shared = {c.name for c in binding.columns if c.codec is not None and not c.per_item}
    lost = {name for row in rows for name in inexpressible(binding, row)}
    lost |= {name for name in shared for row in rows[1:] if row.get(name) != rows[0].get(name)}  # fan-out rows disagree
    return sorted(lost)


__all__ = [
    "BINDINGS",
    "BY_TABLE",
    "KIND_TABLE",
    "TABLE_ORDER",
    "ImportContext",
    "RenderedRow",
    "adapter",
    "config",
    "dataset",
    "evaluation_job",
    "fine_tuning_job",
    "import_spec",
    "lost_columns",
    "model",
    "model_export",
    "product_link",
    "product_name",
    "prompt",
    "referrers",
    "render_rows",
    "run_note",
]
