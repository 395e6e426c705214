"""Jobs are level-triggered: given a job's rows and what its backend reports, what to do next.

Pure. The planner pairs a FineTuningJob, EvaluationJob or ModelExport with its rows as for any
kind; `advance` then looks at the observed job and adds to that change what the job needs now:
launch it (new rows, or rows whose job never started), adopt a launch a crashed apply did not
record, register the adapter a successful training produced (renaming the previous version's),
relaunch a transient failure while `retries` allow, hold an export at its gate, or report a
running or failed job. Each launch carries a deterministic job name and its job-input document;
the name carries the store's identity and the digest of that document, so a job is adopted only
when it ran this very input for this store (one of another input is named, never adopted). A
generation whose row records its job follows that job: an in-place change to the manifest since
(a token's name, resources) does not run it again; a change that forces a re-run is a new generation.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler import kinds
from reconciler.desired import Desired
from reconciler.history import as_history, is_history
from reconciler.jobinput import JobSettings, evaluate_input, export_input, named_input, train_input
from reconciler.lineage import Provenance
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import EvaluationJob, FineTuningJob, ModelExport
from reconciler.plan import Action, Change, Consequence, Launch, ObservedJob, Record, Reuse, RowOp
from reconciler.records import Row
from reconciler.reuse import evaluation_note, planned, reusable, same_run, training_rows, with_lineage
from reconciler.runtime import RETRYABLE, JobObservation, JobState

TRAININGS, EVALUATIONS = kinds.fine_tuning_job.BINDING, kinds.evaluation_job.BINDING
ADAPTERS, MODELS = kinds.adapter.BINDING, kinds.model.BINDING


@dataclass
class JobContext:
    snapshot: Snapshot
    settings: JobSettings
    observations: dict[str, JobObservation]
    row: Callable[[str, Any], Row | None]  # (table, id) -> the row this plan writes, or the store's
    new_id: Callable[..., str]
    managed: dict[tuple[str, str], ManagedRecord] = field(default_factory=dict)
    token_envs: Mapping[str, str] = field(default_factory=dict)  # model/dataset id -> hf_token_env its manifest names
    provenance: Provenance = field(default_factory=Provenance)  # the commit and data digests each job input's lineage records
    no_reuse: frozenset[str] = frozenset()  # addresses replaced on request (`--replace`): run anew, never reused
    _by_job_id: dict[str, JobObservation] | None = field(default=None, init=False, repr=False)
    _sorted_names: list[str] | None = field(default=None, init=False, repr=False)

    def observe(self, name: str) -> JobObservation:
        return self.observations.get(name) or JobObservation(name, JobState.NOT_LAUNCHED)

    def recorded(self, value: str) -> JobObservation:
        """The job a Studio row records (`cml_job_id`): by its name, or by the backend's id of it (CML)."""
        if value in self.observations or not value:
            return self.observe(value)
        if self._by_job_id is None:
            self._by_job_id = {obs.job_id: obs for obs in self.observations.values() if obs.job_id}
        return self._by_job_id.get(value) or JobObservation(value, JobState.NOT_LAUNCHED)

    def others(self, name: str) -> list[str]:
        """Jobs of the same object, generation and store that ran another input (never adopted)."""
        prefix = name[: name.rstrip("-").rfind("-") + 1]
        if self._sorted_names is None:  # the names sharing a prefix are one run of the sorted names
            self._sorted_names = sorted(self.observations)
        names, out = self._sorted_names, []
        for i in range(bisect_left(names, prefix), len(names)):
            if not names[i].startswith(prefix):
                break
            if names[i] != name:
                out.append(names[i])
        return out


def advance(manifest: Manifest, desired: Desired, record: ManagedRecord | None, change: Change, ctx: JobContext) -> Change:
    if change.waits_for or change.action is Action.DELETE:
        return change
    if is_history(manifest, record, change):
        return as_history(change, record, ctx.snapshot)
    res = manifest.resource
    if isinstance(res, FineTuningJob):
        return _train(manifest, desired, record, change, ctx)
    if isinstance(res, EvaluationJob):
        return _evaluate(manifest, desired, record, change, ctx)
    if isinstance(res, ModelExport):
        return _export(manifest, desired, record, change, ctx)
    return change


def _fresh(change: Change) -> bool:
    return change.action in (Action.CREATE, Action.REPLACE) and change.record is not None


def _backend(m: Manifest, change: Change, record: ManagedRecord | None, ctx: JobContext) -> str:
    """Where this generation's jobs run: where it was first launched (kept in the record), else the
    manifest's `spec.backend`, else the project's default (`--backend`, FTCTL_BACKEND, ftctl.toml)."""
    if change.record is not None and change.record.backend:
        return change.record.backend
    if record is not None and not _fresh(change):
        return record.backend or "local"
    return getattr(m.resource.spec, "backend", None) or ctx.settings.backend


def _with_backend(change: Change, backend: str) -> Change:
    """A new generation's record says where its jobs run, so later plans observe them there."""
    if change.record is None or change.record.backend == backend:
        return change
    return replace(change, record=replace(change.record, backend=backend))


def _generation(change: Change, record: ManagedRecord | None) -> int:
    if change.record is not None:
        return change.record.generation
    return record.generation if record else 1


def _merge(change: Change, *, reason: str, consequence: Consequence, ops: tuple[RowOp, ...] = (),
           launches: tuple[Launch, ...] = (), jobs: tuple[ObservedJob, ...] = (), record: Record | None = None) -> Change:
    """Add a job's next step to the change the rows produced (a noop becomes an update)."""
    if change.action is Action.NOOP and (ops or launches):
        return replace(change, action=Action.UPDATE, reason=reason, consequence=consequence, ops=ops,
                       launches=launches, jobs=jobs, record=record if record is not None else change.record)
    if change.action is Action.NOOP:
        return replace(change, reason=reason, jobs=jobs)
    return replace(change, ops=change.ops + ops, launches=change.launches + launches, jobs=jobs or change.jobs)


def launch_note(launch: Launch, started: JobObservation) -> dict[str, Any]:
    """What a launch writes into the Studio row that records its job, once its backend made it:
    `cml_job_id`, the CML job's id on CML (what the Studio's job pages match against the project's
    CML jobs), the job name elsewhere; and for an evaluation its `evaluation_dir`, the folder its
    results are written to in the Studio's files (what the Studio's evaluation page reads)."""
    folder = (launch.input.get("outputs") or {}).get("evaluation_dir") if isinstance(launch.input, dict) else None
    return kinds.run_note(launch.row.partition("/")[0], started.studio_job_id, folder)


def _cml_job_id(table: str, row_id: str, obs: JobObservation, ctx: JobContext) -> tuple[RowOp, ...]:
    """Adopt a launch a crashed apply did not note in the Studio's row (`launch_note`): the job it
    found under its name, and where an evaluation's results are."""
    live = ctx.snapshot.row(table, row_id)
    note = kinds.run_note(table, obs.studio_job_id, ctx.settings.evaluation_dir(obs.job_name))
    missing = {k: v for k, v in note.items() if live is not None and (live.get(k) or "") != v}
    return (RowOp(table, "update", row_id, missing),) if missing else ()


def _followed(table: str, row_id: str, name: str, ctx: JobContext, document: dict[str, Any] | None = None) -> JobObservation:
    """The job this generation runs: the one the store's row records (this store launched it, under
    the input of its day: an in-place change since never runs it again), else the one named after
    the current input (`name`; the backend adopts it only when its recorded input has that digest).
    A row records its job by name, or on CML by the CML job's id."""
    recorded = ctx.recorded(kinds.BY_TABLE[table].run_of(ctx.snapshot.row(table, row_id) or {}))
    same_generation = recorded.job_name.startswith(name[: name.rfind("-") + 1])
    reused = same_run(recorded.job_name, name, document, ctx.snapshot)  # an earlier generation's job of these inputs (`reuse`)
    if recorded.job_name != name and (same_generation or reused) and recorded.state is not JobState.NOT_LAUNCHED:
        return recorded
    return ctx.observe(name)


def _next_step(obs: JobObservation, retries: int, launch: Callable[[int], Launch | None],
               done: Callable[[JobObservation], tuple[str, Consequence, tuple[RowOp, ...]]],
               others: Sequence[str] = ()) -> tuple[str, Consequence, tuple[RowOp, ...], tuple[Launch, ...]]:
    """(reason, consequence, ops, launches) for one job in the state observed."""
    if obs.state is JobState.NOT_LAUNCHED:
        first = launch(1)
        unadopted = f" (not adopting {', '.join(others)}: it ran another input)" if others else ""
        return (f"launch the job{unadopted}", Consequence.LAUNCH, (), (first,) if first else ())
    if obs.state is JobState.FAILED and obs.error_class in RETRYABLE and obs.attempt <= retries:
        again = launch(obs.attempt + 1)
        return (f"relaunch (attempt {obs.attempt + 1} of {retries + 1}) after {obs.summary()}{_starts_from(obs, again)}",
                Consequence.RETRY, (), (again,) if again else ())
    if obs.state is JobState.SUCCEEDED:
        reason, consequence, ops = done(obs)
        return reason, consequence, ops, ()
    return obs.summary(), Consequence.NONE, (), ()


def _starts_from(failed: JobObservation, again: Launch | None) -> str:
    """Where a relaunched training starts (runners/checkpoints.py decides; this says it in the plan):
    from the failed attempt's last checkpoint when it runs again under the same job name (the same
    input, the same job folder), from the start when its input changed since (a job of another name)."""
    step = failed.progress.get("checkpoint_step")
    if again is None or again.kind != "train" or not isinstance(step, int) or step <= 0:
        return ""
    if again.job_name != failed.job_name:
        return f"; from the start: its input changed since the checkpoint at step {step} (job {failed.job_name})"
    return f"; resumes from its checkpoint at step {step}"


# -- training ------------------------------------------------------------------------------------


def _train(m: Manifest, desired: Desired, record: ManagedRecord | None, change: Change, ctx: JobContext) -> Change:
    job = m.resource
    assert isinstance(job, FineTuningJob)
    gen = _generation(change, record)
    row_id = change.record.store_id if change.record else (record.store_id if record else "")
    row = {"id": row_id, **desired.rows[0].values}
    backend = _backend(m, change, record, ctx)
    body = kinds.fine_tuning_job.axolotl_body(row, ctx.row)
    name, document = named_input("FineTuningJob", m.name, gen, store_id=ctx.snapshot.store_id, build=lambda n: train_input(
        n, row, rows=ctx.row, settings=ctx.settings, hf_token_env=job.spec.hf_token_env, token_envs=ctx.token_envs,
        axolotl=body, dist=desired.spec.get("dist")))
    document = with_lineage(document, ctx.provenance)

    def launch(attempt: int) -> Launch | None:
        return Launch(name, "train", attempt, document, row=f"{TRAININGS.table}/{row_id}", backend=backend) if document else None

    if _fresh(change):
        earlier = None if change.address in ctx.no_reuse else reusable(
            change.kind, change.name, document, snapshot=ctx.snapshot, observations=ctx.observations)
        reused = training_rows(change, earlier, job.adapter_name, ctx.snapshot, record) if earlier else None
        if reused is not None:
            return _with_backend(reused, backend)
        first = launch(1)
        return replace(_with_backend(change, backend), launches=(first,) if first else ())
    obs = _followed(TRAININGS.table, row_id, name, ctx, document)
    adopt = _cml_job_id(TRAININGS.table, row_id, obs, ctx) if obs.state is not JobState.NOT_LAUNCHED else ()

    def done(result: JobObservation) -> tuple[str, Consequence, tuple[RowOp, ...]]:
        if _produced_adapter(job.adapter_name, row_id, ctx) is not None:
            return f"succeeded; adapter {job.adapter_name} registered", Consequence.NONE, ()
        # The previous version's row and adapter are renamed in the same step: the name always
        # resolves to the newest finished version, never to none.
        retired = kinds.adapter.earlier_versions(ctx.snapshot.rows, job.adapter_name, current=row_id, generation=gen)
        return (f"register adapter {job.adapter_name} that the job produced", Consequence.REGISTER,
                (*retired, _adapter_insert(job.adapter_name, row, result, gen, ctx, m.name)))

    reason, consequence, ops, launches = _next_step(obs, job.spec.retries, launch, done, ctx.others(name))
    if adopt and not ops and not launches:
        reason, consequence = f"record the job's launch ({obs.summary()})", Consequence.NONE
    return _merge(change, reason=reason, consequence=consequence, ops=adopt + ops, launches=launches, jobs=(ObservedJob.of(obs),))


def _produced_adapter(adapter_name: str, job_row_id: str, ctx: JobContext) -> Row | None:
    for row in ctx.snapshot.rows.get(ADAPTERS.table, {}).values():
        if kinds.adapter.name(row) == adapter_name and kinds.adapter.trained_by(row) == job_row_id:
            return row
    return None


def _adapter_insert(adapter_name: str, job_row: Row, obs: JobObservation, gen: int, ctx: JobContext, job: str) -> RowOp:
    adapter_id = ctx.new_id("adapter", adapter_name, gen)
    values = kinds.adapter.trained_adapter_row(
        job_row, name=adapter_name, description=kinds.adapter.trained_description(job, gen),
        adapter_dir=str(obs.artifacts.get("adapter_dir") or ""), experiment_id=str(obs.artifacts.get("mlflow_experiment_id") or ""),
        run_id=str(obs.artifacts.get("mlflow_run_id") or ""))
    return RowOp(ADAPTERS.table, "insert", adapter_id, {"id": adapter_id, **values})


# -- evaluation ----------------------------------------------------------------------------------


def _evaluate(m: Manifest, desired: Desired, record: ManagedRecord | None, change: Change, ctx: JobContext) -> Change:
    job = m.resource
    assert isinstance(job, EvaluationJob)
    gen = _generation(change, record)
    written = {op.row_id: op.values for op in change.ops if op.op == "insert"}
    if _fresh(change):
        ids = list(written)
    else:
        by_key = {EVALUATIONS.row_key(r): str(r["id"])
                  for rid in (record.row_ids if record else ()) if (r := ctx.snapshot.row(EVALUATIONS.table, rid))}
        ids = [by_key.get(r.key, "") for r in desired.rows]
    ops: list[RowOp] = []
    launches: list[Launch] = []
    states: list[ObservedJob] = []
    reasons: list[str] = []
    reuses: list[Reuse] = []
    notes: dict[str, Row] = {}  # row id -> the earlier job a reusing row records
    backend = _backend(m, change, record, ctx)
    for index, (drow, row_id) in enumerate(zip(desired.rows, ids)):
        row = dict(written.get(row_id) or {"id": row_id, **drow.values})  # a re-run's rows carry the new parent_job_id
        name, document = named_input("EvaluationJob", m.name, gen, index, store_id=ctx.snapshot.store_id,
                                     build=lambda n, row=row: _eval_input(n, row, job, ctx))  # type: ignore[misc]
        document = with_lineage(document, ctx.provenance)
        if _fresh(change):
            earlier = None if change.address in ctx.no_reuse else reusable(
                change.kind, change.name, document, snapshot=ctx.snapshot, observations=ctx.observations)
            if earlier is not None:  # its row records the earlier job and its results: nothing is launched
                note = evaluation_note(EVALUATIONS.table, earlier, ctx.observations[earlier.job_name],
                                       ctx.settings.evaluation_dir(earlier.job_name))
                notes[row_id] = note
                reuses.append(planned(earlier))
                continue
            launches += [Launch(name, "evaluate", 1, document, row=f"{EVALUATIONS.table}/{row_id}", backend=backend)] if document else []
            continue
        obs = _followed(EVALUATIONS.table, row_id, name, ctx, document)
        if obs.state is not JobState.NOT_LAUNCHED:
            ops += _cml_job_id(EVALUATIONS.table, row_id, obs, ctx)
        launcher = _launcher(name, document, row_id, backend)
        reason, _, _, more = _next_step(obs, job.spec.retries, launcher, _succeeded, ctx.others(name))
        launches += more
        states.append(ObservedJob.of(obs))
        if more:
            reasons.append(reason)
    if _fresh(change):
        consequence = Consequence.REUSE if reuses and not launches else change.consequence
        written_ops = tuple(replace(op, values={**op.values, **notes[op.row_id]}) if op.op == "insert" and op.row_id in notes else op
                            for op in change.ops)
        return replace(_with_backend(change, backend), launches=tuple(launches), ops=written_ops, reuses=tuple(reuses),
                       consequence=consequence)
    summary = "; ".join(dict.fromkeys(s.summary for s in states))
    if not ops and not launches:
        return _merge(change, reason=summary or change.reason, consequence=Consequence.NONE, jobs=tuple(states))
    return _merge(change, reason="; ".join(reasons) or "record the jobs' launches", consequence=Consequence.LAUNCH,
                  ops=tuple(ops), launches=tuple(launches), jobs=tuple(states))


def _launcher(name: str, document: dict[str, Any] | None, row_id: str, backend: str) -> Callable[[int], Launch | None]:
    return lambda attempt: Launch(name, "evaluate", attempt, document, row=f"{EVALUATIONS.table}/{row_id}", backend=backend) if document else None


def _succeeded(_obs: JobObservation) -> tuple[str, Consequence, tuple[RowOp, ...]]:
    return "succeeded", Consequence.NONE, ()


def _eval_input(name: str, row: Row, job: EvaluationJob, ctx: JobContext) -> dict[str, Any] | None:
    adapter = kinds.evaluation_job.adapter_of(row, ctx.row)
    split, trained_fraction = kinds.adapter.trained_split(adapter, ctx.row)
    return evaluate_input(name, row, rows=ctx.row, settings=ctx.settings, adapter=adapter, split=split,
                          fraction=trained_fraction * job.spec.eval_dataset_fraction, max_rows=None, hf_token_env=job.spec.hf_token_env, token_envs=ctx.token_envs)


# -- export --------------------------------------------------------------------------------------


def gate_verdict(export: ModelExport, adapter_id: str, ctx: JobContext) -> tuple[bool | None, str]:
    """(True open / False closed / None undecided, why) for an export's gate."""
    gate = export.spec.gate
    if gate is None:
        return True, ""
    record = ctx.managed.get(("EvaluationJob", gate.evaluation))
    if record is None:
        return None, f"gate: EvaluationJob/{gate.evaluation} has not run"
    for row_id in record.row_ids:
        row = ctx.snapshot.row(EVALUATIONS.table, row_id) or {}
        if kinds.evaluation_job.adapter_id(row) != (adapter_id or ""):
            continue
        obs = ctx.recorded(EVALUATIONS.run_of(row))  # the job its row records (its name, or CML job id)
        if obs.state is not JobState.SUCCEEDED:
            return None, f"gate: EvaluationJob/{gate.evaluation} is {obs.summary()}"
        value = obs.metrics.get(gate.metric)
        if value is None and obs.message:  # succeeded, but its result could not be read from here
            return None, f"gate: EvaluationJob/{gate.evaluation} {obs.message}"
        if value is None:
            return False, f"gate closed: EvaluationJob/{gate.evaluation} reported no metric {gate.metric!r}"
        if gate.min is not None and value < gate.min:
            return False, f"gate closed: {gate.metric} {value:.4g} < min {gate.min:g} (EvaluationJob/{gate.evaluation})"
        if gate.max is not None and value > gate.max:
            return False, f"gate closed: {gate.metric} {value:.4g} > max {gate.max:g} (EvaluationJob/{gate.evaluation})"
        return True, f"gate open: {gate.metric} {value:.4g} (EvaluationJob/{gate.evaluation})"
    return None, f"gate: EvaluationJob/{gate.evaluation} does not evaluate this adapter yet"


def _export(m: Manifest, desired: Desired, record: ManagedRecord | None, change: Change, ctx: JobContext) -> Change:
    export = m.resource
    assert isinstance(export, ModelExport)
    spec = desired.spec
    gen = _generation(change, record)
    model_id, adapter_id = kinds.model_export.refs(spec)
    model = ctx.row(MODELS.table, model_id)
    adapter = ctx.row(ADAPTERS.table, adapter_id) if adapter_id else None
    backend = _backend(m, change, record, ctx)
    name, document = named_input("ModelExport", m.name, gen, store_id=ctx.snapshot.store_id, build=lambda n: None if model is None else export_input(
        n, model=model, adapter=adapter, **kinds.model_export.export_args(spec), settings=ctx.settings,
        hf_token_env=export.spec.hf_token_env, token_envs=ctx.token_envs))
    document = with_lineage(document, ctx.provenance)

    def launch(attempt: int) -> Launch | None:
        return Launch(name, "export", attempt, document, backend=backend) if document else None

    if _fresh(change):
        verdict, why = gate_verdict(export, adapter_id, ctx)
        if verdict is not True:
            consequence = Consequence.GATED if verdict is False else Consequence.WAIT
            return Change(change.kind, change.name, change.action, why, consequence, change.wave, waits_for=(why,))
        first = launch(1)
        return replace(_with_backend(change, backend), reason=f"{change.reason}; {why}" if why else change.reason,
                       launches=(first,) if first else ())
    obs = ctx.observe(name)

    def done(result: JobObservation) -> tuple[str, Consequence, tuple[RowOp, ...]]:
        art = result.artifacts
        if art.get("cml_model_id"):
            return (f"deployed: CML model {art.get('cml_model_name', '')} ({art['cml_model_id']}), "
                    f"deployment {art.get('cml_deployment_id', '?')}", Consequence.NONE, ())
        return (f"exported: {art.get('registered_model_name', '')} version {art.get('registered_model_version', '?')}",
                Consequence.NONE, ())

    reason, consequence, ops, launches = _next_step(obs, export.spec.retries, launch, done, ctx.others(name))
    return _merge(change, reason=reason, consequence=consequence, ops=ops, launches=launches, jobs=(ObservedJob.of(obs),))
