"""An object's generations as ftctl recorded them: what `ftctl history Kind/name` lists.

Pure. In: the snapshot (its `ftctl_lineage` rows: every job ftctl launched and every reuse it
applied, `lineage.LineageRecord`) and what the backends say of those jobs. Out: one `Generation`
per generation of the object, oldest first, each with its inputs (input digest and reuse key per
job, dataset digest, base revision, config digests), the commit and ftctl version it was planned
from, when, whether it ran its own jobs or reused an earlier generation's (and which), its jobs'
states, metrics and measured runtime, and what the plan estimated it to take at launch.

The engine reads the store and the backends (`jobs_to_observe` names what to ask); `views.history`
renders. Nothing here reads a file or a clock.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.lineage import UNKNOWN, LineageRecord
from reconciler.live import Snapshot
from reconciler.runtime import JobObservation

JOB_KINDS = ("FineTuningJob", "EvaluationJob", "ModelExport")  # the kinds whose objects run jobs


class HistoryError(ValueError):
    """An object with no history in the store: one line, with the closest name as a hint."""


@dataclass(frozen=True)
class GenerationJob:
    """One job of a generation: its own run, or the earlier run it reused (`reused_from`)."""

    job_name: str
    job_kind: str  # train | evaluate | export
    row: str  # `table/id` of the Studio row recording it ('' for an export)
    input_digest: str
    reuse_key: str
    state: str  # as its backend says now ('unknown' when it was not asked or does not know the job)
    metrics: dict[str, float] = field(default_factory=dict)
    runtime_s: float = 0.0  # measured (its result's finished - started); 0 when not known
    reused_from: str = ""  # the earlier job whose output this generation took ('' when it ran this job)
    reused_generation: int = 0  # that job's generation

    @property
    def launched(self) -> bool:
        return not self.reused_from


@dataclass(frozen=True)
class Generation:
    """One generation of an object: what it ran from, what it ran (or reused), and what it cost."""

    generation: int
    at: float  # when its first job was launched (or its reuse applied)
    commit: str
    ftctl_version: str
    dataset_digest: str
    base_revision: str
    config_digests: dict[str, str]
    jobs: tuple[GenerationJob, ...]
    estimate: dict[str, Any] = field(default_factory=dict)  # the plan's figures at launch ({} for a reuse, or none made)
    current: bool = False  # the generation ftctl's record holds now

    @property
    def launched(self) -> bool:
        """It ran at least one job of its own (else it only reused earlier ones: 0 device-hours)."""
        return any(j.launched for j in self.jobs)

    @property
    def reused_generations(self) -> tuple[int, ...]:
        return tuple(sorted({j.reused_generation for j in self.jobs if not j.launched}))

    @property
    def runtime_s(self) -> float:
        """Measured seconds of the jobs it ran itself (a reused job's time was spent by its own generation)."""
        return sum(j.runtime_s for j in self.jobs if j.launched)

    @property
    def device_hours(self) -> float:
        return float(self.estimate.get("device_hours") or 0.0) if self.launched else 0.0

    @property
    def cost(self) -> float:
        return float(self.estimate.get("cost") or 0.0) if self.launched else 0.0


@dataclass(frozen=True)
class ObjectHistory:
    kind: str
    name: str
    managed: bool  # ftctl manages it now (a pruned object keeps its lineage)
    generations: tuple[Generation, ...]

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def device_hours(self) -> float:
        return sum(g.device_hours for g in self.generations)

    @property
    def cost(self) -> float:
        return sum(g.cost for g in self.generations)

    @property
    def currency(self) -> str:
        return next((str(g.estimate["currency"]) for g in self.generations if g.estimate.get("currency")), "USD")


def records_of(snapshot: Snapshot, kind: str, name: str) -> list[LineageRecord]:
    return [r for r in snapshot.lineage if (r.kind, r.name) == (kind, name)]


def jobs_to_observe(snapshot: Snapshot, kind: str, name: str) -> list[tuple[str, str]]:
    """(job name, backend) of every job the object's lineage names, for the backends to be asked."""
    record = snapshot.managed.get((kind, name))
    backend = (record.backend if record else "") or "local"
    return [(job, backend) for job in dict.fromkeys(r.job_name for r in records_of(snapshot, kind, name))]


def object_history(snapshot: Snapshot, kind: str, name: str, observations: Mapping[str, JobObservation]) -> ObjectHistory:
    """The object's generations, oldest first; an object the store has no history of is an error."""
    if kind not in JOB_KINDS:
        raise HistoryError(f"{kind}/{name}: a {kind} runs no jobs; history lists the generations of "
                           f"{', '.join(JOB_KINDS)} objects (`ftctl describe` shows any object)")
    records = records_of(snapshot, kind, name)
    managed = (kind, name) in snapshot.managed
    if not records and not managed:
        known = {r.name for r in snapshot.lineage if r.kind == kind} | {n for k, n in snapshot.managed if k == kind}
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        raise HistoryError(f"no {kind} named {name!r} in the store's history{f'; did you mean {close[0]}?' if close else ''}")
    first_run = {r.job_name: r.generation for r in sorted(records, key=lambda r: (r.generation, r.at)) if not r.reused_from}
    current = snapshot.managed[(kind, name)].generation if managed else 0
    by_generation: dict[int, list[LineageRecord]] = {}
    for record in sorted(records, key=lambda r: (r.generation, r.at)):
        by_generation.setdefault(record.generation, []).append(record)
    return ObjectHistory(kind, name, managed, tuple(
        _generation(number, found, observations, first_run, current=number == current)
        for number, found in sorted(by_generation.items())))


def _generation(number: int, records: list[LineageRecord], observations: Mapping[str, JobObservation],
                first_run: Mapping[str, int], *, current: bool) -> Generation:
    head = records[0]
    jobs = tuple(_job(r, observations.get(r.job_name), first_run) for r in records)
    estimate = next((dict(r.estimate) for r in records if r.estimate and not r.reused_from), {})
    return Generation(number, head.at, head.commit or UNKNOWN, head.ftctl_version, head.dataset_digest or UNKNOWN,
                      head.base_revision or UNKNOWN, dict(head.config_digests), jobs, estimate, current)


def _job(record: LineageRecord, seen: JobObservation | None, first_run: Mapping[str, int]) -> GenerationJob:
    return GenerationJob(record.job_name, record.job_kind, record.row, record.input_digest, record.reuse_key,
                         seen.state.value if seen is not None else "unknown", dict(seen.metrics) if seen else {},
                         seen.runtime_s if seen else 0.0, record.reused_from,
                         first_run.get(record.reused_from, 0) if record.reused_from else 0)
