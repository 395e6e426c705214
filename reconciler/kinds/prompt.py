"""Prompt ↔ the Studio's `prompts` table, and what a job reads of a prompt row. The Studio's
auto-generated axolotl prompts have no type and no input or completion template (NULL)."""

from __future__ import annotations

from reconciler.kinds.base import TEXT, Binding, Column, Ref, RowView
from reconciler.models.prompt import PromptSpec

TEMPLATES = ("prompt_template", "input_template", "completion_template")

BINDING = Binding(
    kind="Prompt",
    table="prompts",
    spec_model=PromptSpec,
    columns=(
        Column("id", derived="id"),
        Column("type", ("type",), TEXT),
        Column("name", derived="name"),
        Column("description", ("description",), TEXT),
        Column("dataset_id", ("dataset",), Ref("Dataset")),
        *(Column(t, (t,), TEXT) for t in TEMPLATES),
    ),
    name_column="name",
    unique=("name",),
    run_inputs=TEMPLATES,
    delete_rank=4,
    live_fields={"type": "type", "dataset_id": "dataset_id"},
    shown=(("DATASET", ("dataset_id",)),),
)


def templates(row: RowView) -> dict[str, str]:
    """A job input's `prompt` block."""
    return {k: str(row.get(k) or "") for k in TEMPLATES}


def dataset(row: RowView) -> str:
    return str(row.get("dataset_id") or "")
