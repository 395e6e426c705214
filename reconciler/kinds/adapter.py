"""Adapter ↔ the Studio's `adapters` table (the Studio writes '' for every unset request string),
and what jobs read of an adapter row."""

from __future__ import annotations

from reconciler.kinds import fine_tuning_job
from reconciler.kinds.base import TEXT, Binding, Column, Path, Ref, RowsOf, RowView
from reconciler.kinds.model import registry_fact
from reconciler.models.adapter import AdapterSpec
from reconciler.records import Row

BINDING = Binding(
    kind="Adapter",
    table="adapters",
    spec_model=AdapterSpec,
    columns=(
        Column("id", derived="id"),
        Column("type", ("type",), TEXT, empty=""),
        Column("name", derived="name"),
        Column("description", ("description",), TEXT, empty=""),
        Column("huggingface_name", ("huggingface_name",), TEXT, empty=""),
        Column("model_id", ("model",), Ref("Model"), empty=""),
        Column("location", ("location",), Path(), empty=""),
        Column("fine_tuning_job_id", ("fine_tuning_job",), Ref("FineTuningJob"), empty=""),
        Column("prompt_id", ("prompt",), Ref("Prompt"), empty=""),
        Column("cml_registered_model_id", ("cml_registered_model_id",), TEXT, empty=""),
        Column("mlflow_experiment_id", ("mlflow_experiment_id",), TEXT, fallback=registry_fact("experiment_id")),
        Column("mlflow_run_id", ("mlflow_run_id",), TEXT, fallback=registry_fact("run_id")),
    ),
    name_column="name",
    unique=("name",),
    run_inputs=("type", "huggingface_name", "location", "cml_registered_model_id", "model_id"),
    delete_rank=3,
    live_fields={"type": "type", "model_id": "model_id"},
    shown=(("BASE MODEL", ("model_id",)), ("SOURCE", ("huggingface_name", "location"))),
)


def name(row: RowView) -> str:
    return str(row.get("name") or "")


def location(row: RowView) -> str:
    return str(row.get("location") or "")


def trained_by(row: RowView) -> str:
    """The store id of the FineTuningJob row that produced the adapter ('' when none)."""
    return str(row.get("fine_tuning_job_id") or "")


def trained_split(row: Row | None, rows: RowsOf) -> tuple[float, float]:
    """(train_test_split, dataset_fraction) the adapter was trained with: its training row's, the
    Studio's defaults for an adapter trained elsewhere (or no adapter: a base model)."""
    job = rows(fine_tuning_job.BINDING.table, trained_by(row)) if row and trained_by(row) else None
    return fine_tuning_job.split(job)


def base_model(row: RowView) -> str:
    return str(row.get("model_id") or "")


# What a trained adapter's row takes from its training's row: (adapter column, training column).
FROM_TRAINING = (("name", "adapter_name"), ("model_id", "base_model_id"), ("prompt_id", "prompt_id"))


def trained_description(job: str, generation: int) -> str:
    """The description of an adapter ftctl registered for the training `job` (its manifest name)."""
    return f"trained by FineTuningJob/{job} (generation {generation})"


def described_as_trained_by(row: RowView, job: str) -> bool:
    """Whether the adapter's description says ftctl registered it for the training `job`."""
    return str(row.get("description") or "").startswith(f"trained by FineTuningJob/{job} (")


def trained_adapter_row(job_row: Row, *, name: str, description: str, adapter_dir: str, experiment_id: str,
                        run_id: str) -> Row:
    """The adapter row a finished training registers (no id), as the Studio's own training does."""
    taken = {column: job_row.get(job_column) or "" for column, job_column in FROM_TRAINING}
    return {
        "type": "project", "name": name, "description": description, "huggingface_name": "",
        "model_id": taken["model_id"], "location": adapter_dir,
        "fine_tuning_job_id": job_row["id"], "prompt_id": taken["prompt_id"],
        "cml_registered_model_id": "", "mlflow_experiment_id": experiment_id, "mlflow_run_id": run_id,
    }
