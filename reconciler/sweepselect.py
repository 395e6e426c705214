"""A ModelExport's `select:`: the adapter an evaluation scored best, chosen when planning.

Pure. `choose` reads, for each ModelExport that selects, the named EvaluationJob's current results:
which adapter each of its Studio rows evaluated (the store) and the metric its job reported (the
backends' observations, as the gate reads them, `lifecycle.gate_verdict`). Every adapter the
evaluation's manifest pairs (a sweep's trials, `sweeps`) must have a score before one is chosen:
until then the export waits for the evaluation (`kinds.model_export.resolve`), and the plan says
which adapters are not scored yet. The winner is the highest score (`mode: max`) or the lowest
(`min`); a tie goes to the adapter listed first. `with_choices` then names the chosen adapter (and,
when the export names none, its model) in the export's manifest, so the plan renders, diffs, gates
and exports it as any adapter: a better trial found later changes the export's spec and re-exports.

Called by `planner.build_plan`; the plan carries each choice (`Change.chosen`) for the views.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from reconciler.kinds import adapter, evaluation_job
from reconciler.live import Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import EvaluationJob, ModelExport
from reconciler.models.base import Ref
from reconciler.plan import Choice
from reconciler.runtime import JobObservation, JobState


def choose(manifests: Iterable[Manifest], snapshot: Snapshot, observations: Mapping[str, JobObservation]) -> dict[str, Choice]:
    """ModelExport name -> what its `select:` chose (or waits for)."""
    manifests = list(manifests)
    evaluations = {m.name: m.resource for m in manifests if isinstance(m.resource, EvaluationJob)}
    by_job_id = {o.job_id: o for o in observations.values() if o.job_id}
    out = {}
    for m in manifests:
        export = m.resource
        if isinstance(export, ModelExport) and export.spec.select is not None and export.spec.adapter is None:
            select = export.spec.select
            wanted = _adapters(evaluations.get(select.evaluation))
            scores = _scores(select.evaluation, select.metric, snapshot, observations, by_job_id)
            out[m.name] = _best(Choice(select.evaluation, select.metric, select.mode), list(wanted) or list(scores), scores)
    return out


def with_choices(manifests: Iterable[Manifest], choices: Mapping[str, Choice]) -> list[Manifest]:
    """The manifests with each selecting export naming its chosen adapter (and that adapter's model
    in the evaluation, when the export names no base_model)."""
    manifests = list(manifests)
    out = []
    evaluations = {m.name: m.resource for m in manifests if isinstance(m.resource, EvaluationJob)}
    for m in manifests:
        choice = choices.get(m.name) if isinstance(m.resource, ModelExport) else None
        if choice is None or not choice.adapter:
            out.append(m)
            continue
        export = m.resource
        assert isinstance(export, ModelExport)
        model = export.spec.base_model or _adapters(evaluations.get(choice.evaluation)).get(choice.adapter)
        spec = export.spec.model_copy(update={"adapter": choice.adapter, "base_model": model})
        out.append(replace(m, resource=export.model_copy(update={"spec": spec})))
    return out


def _adapters(evaluation: EvaluationJob | None) -> dict[str, Ref | None]:
    """The adapters an evaluation pairs, by name, in its order, with the model each is paired with."""
    if evaluation is None:
        return {}
    return {c.adapter: c.model for c in evaluation.spec.combinations if isinstance(c.adapter, str)}


def _scores(evaluation: str, metric: str, snapshot: Snapshot, observations: Mapping[str, JobObservation],
            by_job_id: Mapping[str, JobObservation]) -> dict[str, float]:
    """Adapter name -> the metric its combination's job reported, for the rows of the evaluation's
    current generation whose job succeeded."""
    record = snapshot.managed.get((evaluation_job.BINDING.kind, evaluation))
    out: dict[str, float] = {}
    for row_id in record.row_ids if record is not None else ():
        row = snapshot.row(evaluation_job.BINDING.table, row_id) or {}
        adapter_row = snapshot.row(adapter.BINDING.table, evaluation_job.adapter_id(row)) if evaluation_job.adapter_id(row) else None
        run = evaluation_job.BINDING.run_of(row)
        obs = observations.get(run) or by_job_id.get(run)
        if adapter_row is None or obs is None or obs.state is not JobState.SUCCEEDED or metric not in obs.metrics:
            continue
        out[adapter.name(adapter_row)] = float(obs.metrics[metric])
    return out


def _best(choice: Choice, wanted: list[str], scores: Mapping[str, float]) -> Choice:
    pending = tuple(a for a in wanted if a not in scores)
    scored = {a: scores[a] for a in wanted if a in scores}
    if pending or not scored:
        return replace(choice, scores=scored, pending=pending)
    sign = 1 if choice.mode == "max" else -1
    best = max(scored, key=lambda a: (sign * scored[a], -wanted.index(a)))
    return replace(choice, adapter=best, scores=scored)
