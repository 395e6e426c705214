"""The declaration types of a kind's Studio binding, and the one mapping read in two directions.

Pure. A `Binding` says, as data, how one manifest kind lives in the Studio's store: its table,
every column with the manifest field it comes from and the value format the Studio writes
(`Column`), the references, the unique columns, what changes in place and what re-runs or
replaces. `render_values` reads the declaration manifest → row (the desired rows the planner
compares and writes); `import_spec` reads the same declaration row → manifest (`ftctl import`,
`export-manifests`). Because both directions walk one list of columns with one codec each, a
column cannot be mapped one way and not the other, and a round trip is the identity.

Conventions every column follows:
- a field the manifest leaves out is written as the Studio writes an unset request value
  (`Column.empty`: NULL, or '' where the Studio writes ''); a field given as `null` is NULL;
- a column whose row value the manifest cannot express is listed by `inexpressible`, never
  silently changed; what only a job or the store knows (`Column.history`) is written only when the
  manifest carries it, and is left as the store has it otherwise.
Nothing here reads a file, the store or the network: references, paths and facts come through the
`RenderContext` / `ImportContext` the caller passes (desired.Scope, the importer's names).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from reconciler.plan import Consequence
from reconciler.records import Row, config_text, parsed_config


class _Absent:
    """A field the manifest leaves out (as opposed to one it sets to null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
OMIT: Any = _Absent()  # a render fallback's answer: leave the column as the store has it


RowView = Mapping[str, Any]  # a row read, never written
RowsOf = Callable[[str, Any], "Row | None"]  # (table, id) -> the row (as a plan will have written it), None when absent


class RenderContext(Protocol):
    """What rendering a manifest into rows may ask: reference ids, stored paths, config bodies, facts."""

    facts: Any
    waits_for: list[str]  # addresses whose output rendering needs and the store does not hold yet

    def ref_id(self, ref: Any, kind: str) -> str | None: ...
    def config_body(self, source: Any, config_type: str) -> tuple[Any, str | None]: ...
    def stored_path(self, manifest: Any, location: str | None) -> str | None: ...


@dataclass(frozen=True)
class ImportContext:
    """What reading a row back into a manifest needs: the names of the objects rows point at, and
    where paths are re-expressed from (the project root) and to (the manifests' folder)."""

    names: Mapping[str, tuple[str, str]]  # store id -> (kind, manifest name)
    root: str = ""
    out_dir: str = ""
    name: str = ""  # the manifest name of the object being read
    row: Mapping[str, Any] = field(default_factory=dict)  # the row being read


@dataclass(frozen=True)
class Rendering:
    """One manifest being rendered: the manifest, the object a column reads (spec or an item of
    it), and the context that resolves references."""

    manifest: Any
    source: Any
    scope: RenderContext


class Codec(Protocol):
    """A value format: manifest value → row value (`to_row`) and back (`from_row`). Neither sees
    an unset value: the column handles ABSENT, NULL and the Studio's empty value itself."""

    def to_row(self, value: Any, r: Rendering) -> Any: ...
    def from_row(self, value: Any, c: ImportContext) -> Any: ...


@dataclass(frozen=True)
class Column:
    """One Studio column: where its value comes from in the manifest and in which format."""

    name: str
    path: tuple[str, ...] = ()  # the field under spec (under the item for per-item columns); () = derived
    codec: Codec | None = None  # None: a column ftctl never writes (the Studio leaves it NULL too)
    empty: Any = None  # what the Studio writes for an unset field ('' on some tables)
    history: bool = False  # filled by a job or the store: read back only for runs outside ftctl (`ftctl import`)
    when_given: bool = False  # written only when the manifest carries it (else left as the store has it)
    per_item: bool = False  # one value per row of a fan-out (evaluation combinations)
    fallback: Callable[[Rendering], Any] | None = None  # the value when the field is left out (facts)
    named: bool = False  # left out, the field is the manifest's name
    derived: str = ""  # for path (): "id" (the row's id), "name" (metadata.name), "owner" (the object's id)


@dataclass(frozen=True)
class Reference:
    """A column holding another kind's store id."""

    column: str
    kind: str


@dataclass(frozen=True)
class Binding:
    """How one manifest kind is stored by the Studio. Kinds without a Studio table (ModelExport)
    have `table == ''` and only a resolved spec."""

    kind: str
    table: str
    spec_model: type[BaseModel] | None
    columns: tuple[Column, ...] = ()
    name_column: str = ""  # the column a row is named by ('' when rows have no name)
    unique: tuple[str, ...] = ()  # columns unique among the kind's rows (by the Studio's code)
    replace_columns: frozenset[str] = frozenset()  # a change to one of them makes a new row
    rerun: Consequence | None = None  # any change re-runs its work (a new generation), with this consequence
    in_place: frozenset[str] = frozenset()  # columns of a re-run kind that a change updates in place (no re-run)
    items: tuple[str, ...] = ()  # the spec list whose items fan out into rows ('' = one row)
    item_key: tuple[str, ...] = ()  # per-item columns that pair a desired row with a live row
    extra_refs: tuple[tuple[tuple[str, ...], str], ...] = ()  # (spec path, kind) referenced without a column
    # Columns a job's result depends on, in digest order: a change re-runs the jobs that use the object.
    run_inputs: tuple[str, ...] = ()
    # What the planner keeps beside the rows (jobs: settings with no Studio column; ModelExport: all).
    resolved: Callable[[Any, Any], dict[str, Any]] | None = None  # (manifest, scope) -> resolved spec
    # -- what the planner and the job stages need of the kind ------------------------------------
    delete_rank: int = 99  # deletion order: what uses others goes first
    content_addressed: bool = False  # equal bodies share one row (configs, CF-004)
    lends_token: bool = False  # its manifest's hf_token_env is what jobs on it download with
    produces: str = ""  # the kind its job registers (a training's Adapter, whose row names the job's row)
    run_column: str = ""  # the column recording the job that ran the row (the Studio's `cml_job_id`)
    results_column: str = ""  # the column naming the folder of the job's results (the Studio's pages read it)
    # A row the Studio itself ships (its defaults) is shared: ftctl owns only `shared_columns` of it.
    shared: Callable[[Mapping[str, Any]], bool] | None = None
    shared_columns: tuple[str, ...] = ()
    # `live.LiveObject` field -> the column it reads (rules resolve references through these).
    live_fields: Mapping[str, str] = field(default_factory=lambda: {"type": "type"})
    # What `ftctl get` shows beyond name and state: (header, columns: the first non-empty wins; a
    # `*_id` column shows the name of the object it points to). Kinds without rows: spec keys.
    shown: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def references(self) -> tuple[Reference, ...]:
        return tuple(Reference(c.name, c.codec.kind) for c in self.columns if isinstance(c.codec, Ref))

    @property
    def history_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.history)

    @property
    def fan_out(self) -> bool:
        """One row per item, each carrying the object's id in `owner_column` (evaluations)."""
        return bool(self.items)

    @property
    def owner_column(self) -> str:
        return next((c.name for c in self.columns if c.derived == "owner"), "")

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def row_key(self, row: Mapping[str, Any]) -> str:
        """Pairs a desired row with a live row of the same object: '' for one-row kinds."""
        return "|".join(str(row.get(c) or "") for c in self.item_key)

    def name_of(self, row: Mapping[str, Any]) -> str:
        """What the row is named by ('' when it has no name)."""
        value = row.get(self.name_column) if self.name_column else None
        return "" if value is None else str(value)

    def named(self, name: str) -> dict[str, Any]:
        """The values that rename a row."""
        return {self.name_column: name}

    def run_of(self, row: Mapping[str, Any]) -> str:
        """The job a row records (its CML job's id, or ftctl's job name for a local job); '' when none."""
        return str(row.get(self.run_column) or "") if self.run_column else ""

    def owned_by(self, row: Mapping[str, Any], owner: str) -> bool:
        """Whether a fan-out row belongs to the object whose id is `owner`."""
        return bool(self.owner_column) and row.get(self.owner_column) == owner

    def is_shared(self, row: Mapping[str, Any]) -> bool:
        return self.shared is not None and self.shared(row)


# -- codecs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plain:
    """The value as it is (text, numbers as the ORM declares them)."""

    cast: Callable[[Any], Any] | None = None

    def to_row(self, value: Any, _r: Rendering) -> Any:
        return self.cast(value) if self.cast is not None else value

    def from_row(self, value: Any, _c: ImportContext) -> Any:
        return value


TEXT = Plain()
INT = Plain(int)
FLOAT = Plain(float)


@dataclass(frozen=True)
class Flag:
    """A 0/1 integer column as a boolean field."""

    def to_row(self, value: Any, _r: Rendering) -> Any:
        return int(value)

    def from_row(self, value: Any, _c: ImportContext) -> Any:
        return bool(value) if value in (0, 1) else value


@dataclass(frozen=True)
class Path:
    """A local path: relative to the manifest file in manifests, to the project root in the store
    (the Studio's convention); absolute paths stay absolute; a trailing '/' is kept."""

    def to_row(self, value: Any, r: Rendering) -> Any:
        if value == "":
            return ""  # an empty path is no place: kept as the row has it
        stored = r.scope.stored_path(r.manifest, str(value))
        return stored + "/" if stored and str(value).endswith("/") and not stored.endswith("/") else stored

    def from_row(self, value: Any, c: ImportContext) -> Any:
        text = str(value)
        if os.path.isabs(text) or not text:
            return text
        out = os.path.relpath(os.path.join(c.root, text), c.out_dir or c.root or ".")
        return out + "/" if text.endswith("/") else out


@dataclass(frozen=True)
class Ref:
    """Another kind's store id: a manifest name (or `{id: ...}` of a row no manifest names)."""

    kind: str

    def to_row(self, value: Any, r: Rendering) -> Any:
        return r.scope.ref_id(value, self.kind)

    def from_row(self, value: Any, c: ImportContext) -> Any:
        named = c.names.get(str(value))
        return named[1] if named is not None and named[0] == self.kind else {"id": str(value)}


@dataclass(frozen=True)
class JsonList:
    """A JSON list written as `json.dumps` text (datasets.features)."""

    def to_row(self, value: Any, _r: Rendering) -> Any:
        return json.dumps(list(value))

    def from_row(self, value: Any, _c: ImportContext) -> Any:
        parsed = parsed_config(str(value))
        return parsed if isinstance(parsed, list) and json.dumps(parsed) == value else value


@dataclass(frozen=True)
class Snapshot:
    """A job's config copied into its row as `json.dumps` text; the field is a config source
    (a Config's name, `{id: ...}`, or the body inline)."""

    config_type: str

    def to_row(self, value: Any, r: Rendering) -> Any:
        body, _ = r.scope.config_body(value, self.config_type)
        return json.dumps(body) if body is not None else None

    def from_row(self, value: Any, _c: ImportContext) -> Any:
        return parsed_config(str(value))  # a dict; text that is no JSON object is refused by validation


@dataclass(frozen=True)
class ConfigId:
    """A config the Studio links by id (axolotl, user configs): the field is a config source."""

    config_type: str
    kind: str = "Config"

    def to_row(self, value: Any, r: Rendering) -> Any:
        return r.scope.config_body(value, self.config_type)[1]

    def from_row(self, value: Any, c: ImportContext) -> Any:
        named = c.names.get(str(value))
        return named[1] if named is not None and named[0] == "Config" else {"id": str(value)}


@dataclass(frozen=True)
class ConfigText:
    """configs.config: a mapping written as the Studio writes it (`json.dumps`, YAML for axolotl),
    or text kept as it is."""

    def to_row(self, value: Any, r: Rendering) -> Any:
        if isinstance(value, str):
            return value
        return config_text(str(getattr(r.source, "type", "") or ""), value)

    def from_row(self, value: Any, c: ImportContext) -> Any:
        config_type = str(c.row.get("type") or "")
        body = parsed_config(str(value), yaml=config_type == "axolotl")
        return body if isinstance(body, dict) and config_text(config_type, body) == value else value


def json_value(text: Any) -> Any:
    """A JSON column read for a job: parsed, None when empty or not JSON."""
    if text in (None, ""):
        return None
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return None


# -- the two directions --------------------------------------------------------------------------


def field_value(obj: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`, ABSENT where a field is left out (unset and defaulting to None)."""
    for name in path:
        if obj is None:
            return ABSENT
        value = getattr(obj, name)
        if value is None and isinstance(obj, BaseModel) and name not in obj.model_fields_set:
            return ABSENT
        obj = value
    return obj


def render_column(column: Column, r: Rendering) -> Any:
    """The row value of one column, or OMIT when the store's value is left as it is."""
    value = field_value(r.source, column.path)
    if value is ABSENT:
        if column.named:
            return r.manifest.name
        if column.fallback is not None:
            return column.fallback(r)
        return OMIT if column.history or column.when_given else column.empty
    if value is None:
        return None
    written = column.codec.to_row(value, r) if column.codec is not None else None
    return column.empty if written is None else written


def model_default(model: type[BaseModel] | None, path: tuple[str, ...]) -> Any:
    """The manifest's default at `path` (what a left-out field means)."""
    for name in path:
        if model is None or name not in model.model_fields:
            return None
        info = model.model_fields[name]
        default = info.get_default(call_default_factory=True)
        if name == path[-1]:
            return default
        if isinstance(default, BaseModel):
            model = type(default)
            continue
        annotation = info.annotation
        model = next((a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return None


def import_value(column: Column, value: Any, c: ImportContext, *, model: type[BaseModel] | None) -> Any:
    """A row value as the manifest field that renders it back, or ABSENT when leaving the field
    out renders it (the Studio's empty value, the manifest's default)."""
    default = model_default(model, column.path)
    if column.named and value == c.name:
        return ABSENT
    if value is None:
        return ABSENT if default is None and column.empty is None else None
    if value == column.empty and default is None:
        return ABSENT
    assert column.codec is not None
    out = column.codec.from_row(value, c)
    return ABSENT if default is not None and out == default else out


def set_path(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        spec = spec.setdefault(name, {})
    spec[path[-1]] = value


def inexpressible(binding: Binding, row: Row) -> list[str]:
    """Columns of a row that no manifest field carries, though they hold a value."""
    return [c.name for c in binding.columns if c.codec is None and row.get(c.name) not in (None, "")]
