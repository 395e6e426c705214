"""FineTuningJob ↔ the Studio's `fine_tuning_jobs` table, and the job hooks training needs.

The job row snapshots its configs (`json.dumps` text) and links axolotl and user configs by id;
the Studio leaves the four `*_config_id` columns of the snapshots NULL, and so does ftctl.
`cml_job_id` and `adapter_id` are history: a job fills them when it runs, and a manifest carries
them only for a run that already happened (an imported Studio training).
"""

from __future__ import annotations

from typing import Any

from reconciler.kinds import config
from reconciler.kinds.base import (
    FLOAT,
    INT,
    TEXT,
    Binding,
    Column,
    ConfigId,
    Path,
    Ref,
    RowsOf,
    RowView,
    Snapshot,
    json_value,
)
from reconciler.models.jobs import (
    DEFAULT_DATASET_FRACTION,
    DEFAULT_TRAIN_TEST_SPLIT,
    FineTuningJob,
    FineTuningJobSpec,
)
from reconciler.plan import Consequence
from reconciler.records import Row

BINDING = Binding(
    kind="FineTuningJob",
    table="fine_tuning_jobs",
    spec_model=FineTuningJobSpec,
    columns=(
        Column("id", derived="id"),
        Column("base_model_id", ("base_model",), Ref("Model")),
        Column("dataset_id", ("dataset",), Ref("Dataset")),
        Column("prompt_id", ("prompt",), Ref("Prompt"), empty=""),
        Column("num_workers", ("resources", "num_workers"), INT),
        Column("cml_job_id", ("cml_job_id",), TEXT, history=True),
        Column("adapter_id", ("adapter_id",), Ref("Adapter"), history=True),
        Column("num_cpu", ("resources", "cpu"), INT),
        Column("num_gpu", ("resources", "gpu"), INT),
        Column("num_memory", ("resources", "memory"), INT),
        Column("num_epochs", ("num_epochs",), INT),
        Column("learning_rate", ("learning_rate",), FLOAT),
        Column("out_dir", ("out_dir",), Path(), empty=""),
        Column("training_arguments_config_id"),
        Column("model_bnb_config_id"),
        Column("adapter_bnb_config_id"),
        Column("lora_config_id"),
        Column("training_arguments_config", ("training_arguments",), Snapshot("training_arguments")),
        Column("model_bnb_config", ("bnb_config",), Snapshot("bitsandbytes_config")),
        Column("adapter_bnb_config", ("adapter_bnb_config",), Snapshot("bitsandbytes_config")),
        Column("lora_config", ("lora_config",), Snapshot("lora_config")),
        Column("dataset_fraction", ("dataset_fraction",), FLOAT),
        Column("train_test_split", ("train_test_split",), FLOAT),
        Column("user_script", ("user_script",), Path(), empty=""),
        Column("user_config_id", ("user_config",), ConfigId("custom"), empty=""),
        Column("framework_type", ("framework_type",), TEXT),
        Column("axolotl_config_id", ("axolotl_config",), ConfigId("axolotl"), empty=""),
        Column("gpu_label_id", ("resources", "gpu_label_id"), INT),
        Column("adapter_name", ("adapter_name",), TEXT, named=True),
    ),
    name_column="adapter_name",
    unique=("adapter_name",),
    rerun=Consequence(FineTuningJob.RERUN),
    resolved=lambda manifest, _scope: _dist(manifest.resource.spec.resources),
    delete_rank=2,
    produces="Adapter",
    run_column="cml_job_id",
    live_fields={"type": "framework_type", "model_id": "base_model_id", "dataset_id": "dataset_id"},
    shown=(("BASE MODEL", ("base_model_id",)), ("DATASET", ("dataset_id",))),
)


def _dist(res: Any) -> dict[str, Any]:
    """Distributed training's per-worker resources (no Studio column holds them)."""
    return {"dist": [res.dist_cpu, res.dist_gpu, res.dist_memory]} if res.num_workers > 1 else {}


def adapter_name(row: RowView) -> str:
    return str(row.get("adapter_name") or "")


def cml_job_id(row: RowView) -> str:
    """The job that ran this row: the CML job's id (or, for ftctl's local jobs, the job's name)."""
    return str(row.get("cml_job_id") or "")


def inputs(row: RowView) -> tuple[str, str, str]:
    """(base model id, dataset id, prompt id) a job row (training or evaluation) reads."""
    return str(row.get("base_model_id") or ""), str(row.get("dataset_id") or ""), str(row.get("prompt_id") or "")


def axolotl_config_id(row: RowView) -> str:
    return str(row.get("axolotl_config_id") or "")


def axolotl_body(row: Row, rows: RowsOf) -> dict[str, Any] | None:
    """The axolotl config the training row links, parsed (None when it links none or it is no mapping)."""
    config_id = axolotl_config_id(row)
    linked = rows(config.BINDING.table, config_id) if config_id else None
    body = config.parsed_body(linked, yaml=True) if linked else None
    return body if isinstance(body, dict) else None


def split(row: RowView | None) -> tuple[float, float]:
    """(train_test_split, dataset_fraction) the job trained with; the Studio's defaults without one."""
    row = row or {}
    return (float(row.get("train_test_split") or DEFAULT_TRAIN_TEST_SPLIT),
            float(row.get("dataset_fraction") or DEFAULT_DATASET_FRACTION))


def train_block(row: Row, *, axolotl: Any) -> dict[str, Any]:
    """A job input's `train` block, read from the job row."""
    train_test_split, dataset_fraction = split(row)
    return {
        "framework_type": row.get("framework_type") or "legacy",
        "adapter_name": adapter_name(row),
        "lora_config": json_value(row.get("lora_config")),
        "training_arguments": json_value(row.get("training_arguments_config")),
        "bnb_config": json_value(row.get("model_bnb_config")),
        "adapter_bnb_config": json_value(row.get("adapter_bnb_config")),
        "axolotl_config": axolotl,
        "dataset_fraction": dataset_fraction,
        "train_test_split": train_test_split,
        "num_epochs": row.get("num_epochs"),
        "learning_rate": row.get("learning_rate"),
    }


def resources(row: Row, dist: Any = None) -> dict[str, Any]:
    """A job input's `resources` block from a Studio job row (training or evaluation) and, for
    distributed training, [dist_cpu, dist_gpu, dist_memory]."""
    def number(value: Any) -> Any:
        return None if value in (None, "") else value

    out = {"cpu": number(row.get("num_cpu")), "memory": number(row.get("num_memory")), "gpu": number(row.get("num_gpu")),
           "gpu_label_id": number(row.get("gpu_label_id")), "num_workers": int(row.get("num_workers") or 1)}
    if isinstance(dist, list | tuple) and len(dist) == 3:
        out.update(dist_cpu=dist[0], dist_gpu=dist[1], dist_memory=dist[2])
    return out
