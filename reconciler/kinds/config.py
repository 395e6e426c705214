"""Config ↔ the Studio's `configs` table.

The Studio's own `add_config` stores no description (NULL) and finds axolotl dataset formats by
their description, so ftctl writes the manifest's `description` only when it has one (the
manifest name lives in ftctl's own tables). `is_default` is 1 on the Studio's shipped defaults and
its axolotl format rows, 0 on user configs. A config tied to a Model takes its architecture as
`model_family`; unknown (offline), the store's value is kept. Bodies are content-addressed: a
change makes a new row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.kinds.base import OMIT, TEXT, Binding, Column, ConfigText, Flag, Rendering, RowView
from reconciler.models.config import ConfigSpec
from reconciler.records import Row, comparable, digest, parsed_config


def _family(r: Rendering) -> Any:
    """The architecture of the config's model, as the Studio's ModelMetadataFinder reads it."""
    ref = r.source.model
    if ref is None:
        return None
    model = r.scope.models.get(ref) if isinstance(ref, str) else None  # type: ignore[attr-defined]
    spec = model.resource.spec if model is not None else None
    found = None
    if spec is not None and spec.type == "huggingface" and spec.huggingface_model_name:
        found = r.scope.facts.hub.model_families.get(spec.huggingface_model_name.strip())
    elif model is not None and spec is not None and spec.location:
        found = r.scope.facts.local.model_families.get(model.path(spec.location))
    return found if found is not None else OMIT


BINDING = Binding(
    kind="Config",
    table="configs",
    spec_model=ConfigSpec,
    columns=(
        Column("id", derived="id"),
        Column("type", ("type",), TEXT, empty=""),
        Column("description", ("description",), TEXT),
        Column("config", ("config",), ConfigText()),
        Column("model_family", ("model_family",), TEXT, fallback=_family),
        Column("is_default", ("is_default",), Flag(), empty=0),
    ),
    name_column="description",  # how the Studio finds its axolotl formats; NULL on user configs
    replace_columns=frozenset({"type", "config", "model_family"}),  # content-addressed: a change is a new row
    extra_refs=((("model",), "Model"),),
    run_inputs=("type", "config"),
    delete_rank=5,
    content_addressed=True,
    shared=lambda row: is_default(row),  # the Studio's shipped defaults and axolotl formats
    shown=(("TYPE", ("type",)),),
    shared_columns=("type", "config"),  # a config row shared with others is owned only this far
)
SHARED_COLUMNS = BINDING.shared_columns


def body(row: RowView) -> Any:
    """The config's body parsed (YAML for axolotl)."""
    return parsed_body(row, yaml=row.get("type") == "axolotl")


def parsed_body(row: RowView, *, yaml: bool) -> Any:
    return parsed_config(str(row.get("config") or ""), yaml=yaml)


def is_default(row: Mapping[str, Any]) -> bool:
    return str(row.get("is_default") or 0) == "1"


def kind_of(row: RowView) -> str:
    return str(row.get("type") or "")


def content_key(values: Row) -> str:
    """What makes two config rows the same config (content addressing: CF-004)."""
    return digest([values.get("type"), comparable(BINDING.table, dict(values)).get("config")])
