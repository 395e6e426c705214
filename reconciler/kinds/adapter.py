"""Adapter ↔ the Studio's `adapters` table (the Studio writes '' for every unset request string),
and what jobs read of an adapter row."""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.kinds import fine_tuning_job
from reconciler.kinds.base import TEXT, Binding, Column, Path, Ref, RowsOf, RowView
from reconciler.kinds.model import registry_fact
from reconciler.models.adapter import AdapterSpec
from reconciler.plan import RowOp
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


def trained_generation(row: RowView) -> int | None:
    """The generation `trained_description` wrote into an adapter's description (None: another description)."""
    found = _TRAINED.fullmatch(str(row.get("description") or ""))
    return int(found.group(1)) if found else None


_TRAINED = re.compile(r"trained by FineTuningJob/.+ \(generation (\d+)\)")


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


# -- versions: a re-run keeps the previous training's row and adapter, renamed ---------------------

Tables = Mapping[str, Mapping[str, RowView]]  # table -> id -> row (a snapshot's rows)
JOBS = fine_tuning_job.BINDING


def version_name(adapter_name: str, generation: int) -> str:
    """The name an earlier version of an adapter, and the training row that made it, take."""
    return f"{adapter_name}-g{generation}"


def registered_by(tables: Tables, job_row: RowView) -> list[RowView]:
    """The adapters the training `job_row` registered: trained by it, under its adapter_name."""
    product = fine_tuning_job.adapter_name(job_row)
    return [a for a in tables.get(BINDING.table, {}).values()
            if product and name(a) == product and trained_by(a) == str(job_row["id"])]


def retired(tables: Tables, job_row: RowView, generation: int) -> tuple[RowOp, ...]:
    """A training's row and the adapters it registered, renamed as version `generation` (`<name>-g<N>`):
    the Studio finds a training by its adapter's name (get_dataset_split_by_adapter joins on it), so
    both take the same new name and the version keeps answering with the split it was trained with."""
    new = version_name(fine_tuning_job.adapter_name(job_row), generation)
    return (RowOp(JOBS.table, "update", str(job_row["id"]), JOBS.named(new)),
            *(RowOp(BINDING.table, "update", str(a["id"]), BINDING.named(new)) for a in registered_by(tables, job_row)))


def earlier_versions(tables: Tables, adapter_name: str, *, current: str, generation: int) -> tuple[RowOp, ...]:
    """What registering generation `generation`'s adapter (training row `current`) renames: every
    other training row still named `adapter_name` (an earlier version, which kept the name while
    the new one ran) with the adapters it registered, as the version its adapter's description
    records (else the generation before this one). The base name then resolves to the newest."""
    ops: list[RowOp] = []
    for row in tables.get(JOBS.table, {}).values():
        if fine_tuning_job.adapter_name(row) != adapter_name or str(row["id"]) == current:
            continue
        made = [g for a in registered_by(tables, row) if (g := trained_generation(a)) is not None]
        ops.extend(retired(tables, row, made[0] if made else generation - 1))
    return tuple(ops)
