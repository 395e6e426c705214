"""One object's chain, as `ftctl describe` shows it: where its output came from and where it went.

Pure. In: the snapshot (Studio rows, ftctl's records, `ftctl_lineage`), what the backends say of
the jobs, and where the manifest is (`file:line`). Out: a list of links, each a plain dict
`{stage, what, address, details}`:

- a FineTuningJob: manifest -> Studio row -> job (backend, state, cml_job_id, the lineage digests)
  -> adapter -> each evaluation of that adapter (with its metrics) -> each export of it (the
  registered version its job reports);
- an EvaluationJob: manifest -> each combination's row -> its job (metrics) -> the adapter it
  evaluated -> the training that made it;
- a ModelExport, backwards: manifest -> job -> registered version -> adapter -> training (row, job)
  -> dataset (its content digest) and base model (its revision) -> the evaluations that gate it;
- any other kind: manifest -> its rows.

`inspection.describe` puts it in the describe document; `views.inspection` renders it. Rows are
read through the kind bindings (no Studio column is named here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler import kinds
from reconciler.jobinput import job_prefix
from reconciler.lineage import LineageRecord
from reconciler.live import ManagedRecord, Snapshot
from reconciler.records import Row
from reconciler.runtime import JobObservation

TRAININGS, EVALUATIONS, ADAPTERS = kinds.fine_tuning_job.BINDING, kinds.evaluation_job.BINDING, kinds.adapter.BINDING
REGISTRY_ARTIFACTS = ("model_uri", "registered_model_name", "registered_model_version", "mlflow_run_id",
                      "cml_model_id", "cml_model_name", "cml_build_id")
Link = dict[str, Any]


def link(stage: str, what: str, address: str = "", **details: Any) -> Link:
    return {"stage": stage, "what": what, "address": address, "details": {k: v for k, v in details.items() if v not in (None, "", {})}}


def object_chain(snapshot: Snapshot, kind: str, name: str, *, observations: Mapping[str, JobObservation],
                 manifest_at: str) -> list[Link]:
    """The chain of a managed object (a Studio row ftctl does not manage has none: [])."""
    record = snapshot.managed.get((kind, name))
    if record is None:
        return []
    start = [link("manifest", manifest_at or "<not given: pass the manifests with -f>", record.address)]
    if kind == "FineTuningJob":
        return start + _training(snapshot, record.store_id, observations, forward=True)
    if kind == "EvaluationJob":
        return start + _evaluation(snapshot, record, observations)
    if kind == "ModelExport":
        return start + _export(snapshot, record, observations)
    return start + [link("row", f"{record.store_table}/{i}") for i in record.row_ids if record.store_table]


def _training(snapshot: Snapshot, row_id: str, observations: Mapping[str, JobObservation], *, forward: bool) -> list[Link]:
    row = snapshot.row(TRAININGS.table, row_id)
    if row is None:
        return []
    out = [link("row", f"{TRAININGS.table}/{row_id}", _owner(snapshot, row_id), adapter_name=kinds.fine_tuning_job.adapter_name(row)),
           _job(snapshot, TRAININGS.table, row, observations)]
    adapter = _adapter_of(snapshot, row_id)
    if not forward:
        model_id, dataset_id, _ = kinds.fine_tuning_job.inputs(row)
        lineage = _lineage_of(snapshot, f"{TRAININGS.table}/{row_id}")
        out += [_input_link(snapshot, "dataset", dataset_id, digest=lineage.dataset_digest if lineage else ""),
                _input_link(snapshot, "base model", model_id, revision=lineage.base_revision if lineage else "")]
        return out
    if adapter is not None:
        out.append(_adapter_link(adapter))
        out += _evaluations_of(snapshot, str(adapter["id"]), observations)
        out += _exports_of(snapshot, str(adapter["id"]), observations)
    return out


def _evaluation(snapshot: Snapshot, record: ManagedRecord, observations: Mapping[str, JobObservation]) -> list[Link]:
    out: list[Link] = []
    for row_id in record.row_ids:
        row = snapshot.row(EVALUATIONS.table, row_id)
        if row is None:
            continue
        out += [link("row", f"{EVALUATIONS.table}/{row_id}", record.address), _job(snapshot, EVALUATIONS.table, row, observations)]
        adapter = snapshot.row(ADAPTERS.table, kinds.evaluation_job.adapter_id(row)) if kinds.evaluation_job.adapter_id(row) else None
        if adapter is not None:
            out.append(_adapter_link(adapter))
            trained = kinds.adapter.trained_by(adapter)
            if trained:
                out.append(link("training", f"{TRAININGS.table}/{trained}", _owner(snapshot, trained)))
    return out


def _export(snapshot: Snapshot, record: ManagedRecord, observations: Mapping[str, JobObservation]) -> list[Link]:
    out = _export_jobs(snapshot, record, observations)
    _, adapter_id = kinds.model_export.refs(record.spec or {})
    adapter = snapshot.row(ADAPTERS.table, adapter_id) if adapter_id else None
    if adapter is None:
        return out
    out.append(_adapter_link(adapter))
    trained = kinds.adapter.trained_by(adapter)
    if trained:
        training = _training(snapshot, trained, observations, forward=False)
        out += [{**training[0], "stage": "training"}, *training[1:]] if training else []
    return out + _evaluations_of(snapshot, adapter_id, observations)


def _export_jobs(snapshot: Snapshot, record: ManagedRecord, observations: Mapping[str, JobObservation]) -> list[Link]:
    """The current generation's export jobs, each followed by the registered version it reports."""
    prefix = job_prefix(record.kind, record.name, record.generation, store_id=snapshot.store_id)
    out = []
    for seen in (o for n, o in sorted(observations.items()) if n.startswith(prefix)):
        lineage = next((r for r in reversed(snapshot.lineage) if r.job_name == seen.job_name), None)
        out.append(link("job", seen.job_name, record.address, state=seen.state.value, **_digests(lineage)))
        registered = {k: seen.artifacts[k] for k in REGISTRY_ARTIFACTS if seen.artifacts.get(k) not in (None, "")}
        if registered:
            out.append(link("registry", str(registered.get("model_uri") or registered.get("cml_model_name") or seen.job_name),
                            **registered))
    return out


def _job(snapshot: Snapshot, table: str, row: Row, observations: Mapping[str, JobObservation]) -> Link:
    """The job a row records: ftctl's job name (from its lineage, else the row's run column), the
    backend's word on it, the row's `cml_job_id`, the digests its lineage recorded."""
    recorded = kinds.BY_TABLE[table].run_of(row)
    lineage = _lineage_of(snapshot, f"{table}/{row['id']}", recorded)
    name = lineage.job_name if lineage else recorded
    seen = observations.get(name)
    owner = snapshot.managed.get((lineage.kind, lineage.name)) if lineage else None
    return link("job", name or "<none recorded>", _owner(snapshot, str(row["id"])), cml_job_id=recorded,
                backend=(owner.backend or "local") if owner else "", state=seen.state.value if seen else "unknown",
                metrics=dict(seen.metrics) if seen else {}, generation=lineage.generation if lineage else None,
                reused_from=lineage.reused_from if lineage else "", **_digests(lineage))


def _lineage_of(snapshot: Snapshot, row: str, job: str = "") -> LineageRecord | None:
    """The latest lineage record of the job a row records (by the job's name, else by the row)."""
    found = [r for r in snapshot.lineage if (job and r.job_name == job) or r.row == row]
    return found[-1] if found else None


def _digests(lineage: LineageRecord | None) -> dict[str, Any]:
    if lineage is None:
        return {}
    return {"commit": lineage.commit, "dataset_digest": lineage.dataset_digest, "base_revision": lineage.base_revision,
            "input_digest": lineage.input_digest, "config_digests": dict(lineage.config_digests), "ftctl_version": lineage.ftctl_version}


def _adapter_of(snapshot: Snapshot, training_id: str) -> Row | None:
    return next((a for a in snapshot.rows.get(ADAPTERS.table, {}).values() if kinds.adapter.trained_by(a) == training_id), None)


def _adapter_link(adapter: Row) -> Link:
    return link("adapter", f"{ADAPTERS.table}/{adapter['id']}", name=kinds.adapter.name(adapter), location=kinds.adapter.location(adapter))


def _evaluations_of(snapshot: Snapshot, adapter_id: str, observations: Mapping[str, JobObservation]) -> list[Link]:
    out = []
    for row in snapshot.rows.get(EVALUATIONS.table, {}).values():
        if kinds.evaluation_job.adapter_id(row) == adapter_id:
            job = _job(snapshot, EVALUATIONS.table, row, observations)
            out.append(link("evaluation", f"{EVALUATIONS.table}/{row['id']}", job["address"], job=job["what"], **{
                k: v for k, v in job["details"].items() if k in ("state", "metrics", "cml_job_id")}))
    return out


def _exports_of(snapshot: Snapshot, adapter_id: str, observations: Mapping[str, JobObservation]) -> list[Link]:
    out = []
    for record in snapshot.managed.values():
        if record.kind == "ModelExport" and kinds.model_export.refs(record.spec or {})[1] == adapter_id:
            registered = _export_jobs(snapshot, record, observations)
            versions = [x["what"] for x in registered if x["stage"] == "registry"]
            out.append(link("export", ", ".join(versions) or "<not registered yet>", record.address,
                            jobs=[x["what"] for x in registered if x["stage"] == "job"]))
    return out


def _input_link(snapshot: Snapshot, stage: str, object_id: str, **details: Any) -> Link:
    found = snapshot.by_id(object_id) if object_id else None
    if found is None:
        return link(stage, object_id or "-", **details)
    table = kinds.BINDINGS[found.kind].table if found.kind in kinds.BINDINGS else ""
    return link(stage, f"{table}/{found.id}", _owner(snapshot, object_id) or f"{found.kind}/{found.name}", **details)


def _owner(snapshot: Snapshot, row_id: str) -> str:
    """The managed object whose rows include `row_id` ('' when none)."""
    return next((r.address for r in snapshot.managed.values() if row_id in r.row_ids or r.store_id == row_id), "")
