"""What a plan's launch may run: its job-input document, rebuilt from the rows the plan leaves.

The planner builds each launch's job input (`jobinput`) from Studio rows and carries it in the
plan; a runner does what that document says (which model and data, which config bodies, where it
writes). So `planverify` rebuilds the document here from the rows as they will be after the plan
(the store's, with the plan's own inserts and updates laid over them) and refuses a launch whose
document differs. A few inputs are not in any row: the settings (jobs folder, MLflow places: taken
from the document, its folder checked to be `<jobs folder>/<job name>`; each backend checks it is
its own job folder), the Hub token variable of each source (a variable name, never a value) and an
evaluation's fraction of the dataset. Pure: a launch and the rows in, the problems out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from reconciler import kinds
from reconciler.jobinput import JobSettings, evaluate_input, export_input, input_digest, train_input
from reconciler.lineage import LINEAGE_KEY
from reconciler.plan import Launch
from reconciler.records import Row, float32
from reconciler.reuse import reuse_key

RowsAfter = Callable[[str, Any], Row | None]  # (table, id) -> the row after the plan, or None
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # a Hub token travels as an environment variable's name
SETTINGS_KEYS = ("tracking_uri", "registry_uri", "experiment", "artifact_location")


def launch_input_problems(launch: Launch, *, rows: RowsAfter, spec: Mapping[str, Any] | None) -> Iterator[str]:
    """Why `launch.input` is not the document the plan's rows give (`spec`: a ModelExport's resolved spec)."""
    document = launch.input
    if not isinstance(document, dict) or document.get("job_name") != launch.job_name or document.get("kind") != launch.kind:
        yield "its job input is not a document for this job (job_name and kind must be the launch's)"
        return
    settings = _settings(document, launch.job_name)
    if isinstance(settings, str):
        yield settings
        return
    for key in ("model", "dataset"):
        source = document.get(key)
        variable = source.get("hf_token_env") if isinstance(source, dict) else None
        if variable is not None and not (isinstance(variable, str) and VARIABLE.fullmatch(variable)):
            yield f"its job input's {key} token is not an environment variable's name"
            return
    expected = _rebuilt(launch, document, rows=rows, spec=spec, settings=settings)
    if expected is None:
        yield "its job input names rows the store will not have"
        return
    lineage = document.get(LINEAGE_KEY)
    if lineage is not None:  # metadata the runner only logs, from facts no row holds: its digests must be the document's
        if not _lineage_holds(lineage, expected):
            yield "its job input's lineage does not hold the digests of its own content"
            return
        expected = {**expected, LINEAGE_KEY: lineage}
    where = _first_difference(_normal(expected), _normal(document))
    if where:
        yield f"its job input differs at {where} from what the plan's rows give"


def _lineage_holds(lineage: Any, expected: dict[str, Any]) -> bool:
    """A lineage block of text values whose input digest and reuse key are those of `expected`."""
    if not isinstance(lineage, dict) or not all(isinstance(v, str) for k, v in lineage.items() if k != "config_digests"):
        return False
    digests = lineage.get("config_digests")
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        return False
    key = reuse_key(expected, dataset=str(lineage.get("dataset_digest")), base=str(lineage.get("base_revision")))
    return lineage.get("input_digest") == input_digest(expected) and lineage.get("reuse_key") == key


def _settings(document: dict[str, Any], name: str) -> JobSettings | str:
    """The settings the document was built with, or why it cannot have been built with any."""
    outputs, tracking = document.get("outputs"), document.get("tracking")
    folder = outputs.get("dir") if isinstance(outputs, dict) else None
    if not isinstance(folder, str) or not folder.endswith(f"/{name}") or not isinstance(tracking, dict):
        return f"its job input's outputs are not in a folder named {name!r} of the jobs folder"
    values: dict[str, Any] = {k: tracking.get(k) for k in SETTINGS_KEYS}
    if not all(isinstance(v, str) or (k == "registry_uri" and v is None) for k, v in values.items()):
        return "its job input's tracking settings are not text"
    return JobSettings(jobs_root=folder[: -len(name) - 1], **values)


def _rebuilt(launch: Launch, document: dict[str, Any], *, rows: RowsAfter, spec: Mapping[str, Any] | None,
             settings: JobSettings) -> dict[str, Any] | None:
    name, row_id = launch.job_name, launch.row.partition("/")[2]
    if launch.kind == "export":
        model_id, adapter_id = kinds.model_export.refs(spec or {})
        model = rows(kinds.model.BINDING.table, model_id)
        tokens = _token_envs(document, model=model_id, dataset=None)
        if spec is None or model is None:
            return None
        adapter = rows(kinds.adapter.BINDING.table, adapter_id) if adapter_id else None
        return export_input(name, model=model, adapter=adapter, **kinds.model_export.export_args(spec), settings=settings,
                            token_envs=tokens)
    job = rows((kinds.fine_tuning_job if launch.kind == "train" else kinds.evaluation_job).BINDING.table, row_id)
    model_id, dataset_id, _ = kinds.fine_tuning_job.inputs(job or {})
    tokens = _token_envs(document, model=model_id, dataset=dataset_id)
    if job is None:
        return None
    if launch.kind == "evaluate":
        return _evaluation(launch, document, job, rows=rows, settings=settings, tokens=tokens)
    return train_input(name, job, rows=rows, settings=settings, token_envs=tokens,
                       axolotl=kinds.fine_tuning_job.axolotl_body(job, rows), dist=_dist(document))


def _evaluation(launch: Launch, document: dict[str, Any], row: Row, *, rows: RowsAfter, settings: JobSettings,
                tokens: dict[str, str]) -> dict[str, Any] | None:
    block = document.get("evaluate")
    fraction = block.get("eval_dataset_fraction") if isinstance(block, dict) else None
    if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0 < fraction <= 1:
        return None
    adapter = kinds.evaluation_job.adapter_of(row, rows)
    split, _ = kinds.adapter.trained_split(adapter, rows)
    return evaluate_input(launch.job_name, row, rows=rows, settings=settings, adapter=adapter, split=split,
                          fraction=float(fraction), max_rows=None, token_envs=tokens)


def _token_envs(document: dict[str, Any], *, model: Any, dataset: Any) -> dict[str, str]:
    """Each source's Hub token variable (checked to be a variable's name) by its row id."""
    out: dict[str, str] = {}
    for key, row_id in (("model", model), ("dataset", dataset)):
        source = document.get(key)
        variable = source.get("hf_token_env") if isinstance(source, dict) else None
        if isinstance(variable, str):
            out[str(row_id or "")] = variable
    return out


def _dist(document: dict[str, Any]) -> list[Any] | None:
    resources = document.get("resources")
    if not isinstance(resources, dict) or "dist_cpu" not in resources:
        return None
    return [resources.get("dist_cpu"), resources.get("dist_gpu"), resources.get("dist_memory")]


def _normal(value: Any) -> Any:
    """The document as the plan file carries it (JSON), floats at float32: how the Studio keeps them."""
    def floats(item: Any) -> Any:
        if isinstance(item, float):
            return float32(item) if math.isfinite(item) else item
        if isinstance(item, list):
            return [floats(i) for i in item]
        if isinstance(item, dict):
            return {k: floats(v) for k, v in item.items()}
        return item

    return floats(json.loads(json.dumps(value, default=str)))


def _first_difference(expected: Any, actual: Any, path: str = "") -> str:
    """The first key path where two documents differ ('' when equal), for the refusal's message."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in expected or key not in actual:
                return f"{path}{key}"
            found = _first_difference(expected[key], actual[key], f"{path}{key}.")
            if found:
                return found
        return ""
    return "" if expected == actual else (path.rstrip(".") or "the top")
