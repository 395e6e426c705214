"""The plan: a versioned value that says what apply will do, and why.

A `Plan` records the store it read (its serial and a fingerprint of every row and managed record),
the policy it was made under, the ordered `Change`s, and what blocks it. Each change carries its
action, a reason for humans, the field diffs (sensitive values redacted), the consequence, and the
exact row operations apply will carry out; apply never re-plans. `Plan.from_json(p.to_json()) == p`.

What downstream code decides on is data, never prose: the `Consequence` (stable lower-case codes on
the wire; the words people read live in `views`), the `orphan` and `waits_for` facts, and each job's
observed state as an `ObservedJob`. The `reason` is for people only.

The plan file carries a SHA-256 digest of the plan's whole canonical content, and, when a key is
given (FTCTL_PLAN_KEY, read by the engine), an HMAC-SHA256 signature of that digest: `from_json`
refuses a file whose content no longer matches its digest, or whose signature the key does not
verify. What the content may do to a store is checked by `planverify` when it is applied.

Pure values; built by `planner`, carried out by `executor`, rendered by `views.plan`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from typing import Any

from reconciler.records import Row
from reconciler.runtime import JobObservation, JobState
from reconciler.secrets import MASK, holds_secret, redact

FORMAT_VERSION = 2  # 2: consequence codes, `orphan`, `jobs` as structured values


class PlanFormatError(ValueError):
    """A plan file that is not a plan this version of ftctl can apply."""


class PlanIntegrityError(PlanFormatError):
    """A plan file changed since `ftctl plan` wrote it, or not signed with the key apply holds."""


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "noop"

    def is_change(self) -> bool:
        return self is not Action.NOOP


class Consequence(StrEnum):
    """What a change does beyond its action. The values are wire codes (plan files, JSON output,
    scripts match on them): stable, never reworded; `views.plan.CONSEQUENCE_WORDS` says them."""

    NONE = "none"
    IN_PLACE = "in-place"
    RERUN = "rerun"
    NEW_ADAPTER_VERSION = "new-adapter-version"
    REEXPORT = "re-export"
    SHARED = "shared-config"
    RELEASE = "release"
    WAIT = "wait"
    LAUNCH = "launch"
    RETRY = "retry"
    REGISTER = "register"
    GATED = "gated"
    REUSE = "reuse"  # an earlier generation's job ran this very input: its output is taken, nothing is launched


@dataclass(frozen=True)
class ObservedJob:
    """One job of a change as the plan observed it: what status and health are decided on.
    `summary` is the observation in words, for people (never parsed)."""

    job_name: str
    state: JobState
    attempt: int = 0
    step: int | None = None
    total_steps: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error_class: str = ""
    summary: str = ""

    @classmethod
    def of(cls, obs: JobObservation) -> ObservedJob:
        step, total = obs.progress.get("step"), obs.progress.get("total_steps")
        return cls(obs.job_name, obs.state, obs.attempt, int(step) if isinstance(step, int | float) else None,
                   int(total) if isinstance(total, int | float) else None, dict(obs.metrics), obs.error_class, obs.summary())

    @property
    def active(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class FieldDiff:
    path: str  # table.column, or a spec path for kinds without a row
    before: Any
    after: Any
    forces_replace: bool = False
    sensitive: bool = False

    def __post_init__(self) -> None:
        """A diff never holds a secret's value, whoever builds it: secrets are masked here."""
        if holds_secret(self.before) or holds_secret(self.after):
            object.__setattr__(self, "before", redact(self.before))
            object.__setattr__(self, "after", redact(self.after))
            object.__setattr__(self, "sensitive", True)
        elif MASK in (self.before, self.after):
            object.__setattr__(self, "sensitive", True)

    def shown(self) -> tuple[Any, Any]:
        return ("(sensitive)", "(sensitive)") if self.sensitive else (self.before, self.after)


@dataclass(frozen=True)
class RowOp:
    """One write to a Studio table: insert a whole row, update some columns, or delete a row."""

    table: str
    op: str  # insert | update | delete
    row_id: str
    values: Row = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    """A job apply starts (or, after a crash, finds already started) under a deterministic name."""

    job_name: str
    kind: str  # train | evaluate | export
    attempt: int
    input: dict[str, Any]
    row: str = ""  # `table/id` of the Studio row that records the job (its cml_job_id is set)
    backend: str = "local"  # which backend runs it (local | cml)


@dataclass(frozen=True)
class Reuse:
    """An earlier job whose output a change takes instead of launching (`reuse`): it ran the same
    input (`lineage.reuse_key`) and succeeded. `product` names what it made (a training's adapter:
    `adapters/<id>`; '' for an evaluation, whose results are the job's); `row` the Studio row that
    records the job. `at` and `commit` say when and from which commit it ran."""

    job_name: str
    generation: int
    row: str = ""
    product: str = ""
    product_name: str = ""
    at: float = 0.0
    commit: str = ""
    reuse_key: str = ""


@dataclass(frozen=True)
class Choice:
    """Which adapter a ModelExport's `select:` chose, and why: every candidate's score as the plan
    read it from the evaluation's results (`sweepselect`). `adapter` is '' while it waits for
    results: `pending` names the adapters not scored yet."""

    evaluation: str
    metric: str
    mode: str  # max | min
    adapter: str = ""
    scores: dict[str, float] = field(default_factory=dict)  # adapter name -> its metric
    pending: tuple[str, ...] = ()

    @property
    def value(self) -> float | None:
        return self.scores.get(self.adapter)


@dataclass(frozen=True)
class Record:
    """ftctl's bookkeeping for an object after the change (None on the change when it is deleted)."""

    store_table: str
    store_id: str
    row_ids: tuple[str, ...]
    spec_fingerprint: str
    row_fingerprint: str
    generation: int
    origin: str
    protected: bool = False
    spec: dict[str, Any] | None = None  # the resolved spec, for kinds without Studio rows
    backend: str = ""  # where the jobs of this generation run ('' for kinds without jobs)


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: Action
    reason: str
    consequence: Consequence = Consequence.NONE
    wave: int = 0
    drift: bool = False  # the live row was changed outside ftctl
    fields: tuple[FieldDiff, ...] = ()
    ops: tuple[RowOp, ...] = ()
    record: Record | None = None
    waits_for: tuple[str, ...] = ()  # addresses that must finish first (jobs' produced adapters)
    launches: tuple[Launch, ...] = ()
    jobs: tuple[ObservedJob, ...] = ()  # the object's jobs as observed when planning (an evaluation has one per row)
    adopts: tuple[str, ...] = ()  # ids of the unmanaged Studio rows this change takes over (ftctl.io/store-id)
    orphan: bool = False  # managed, no manifest declares it any more, kept because `--prune` is off
    reuses: tuple[Reuse, ...] = ()  # earlier jobs whose outputs this change takes instead of launching (`reuse`)
    chosen: Choice | None = None  # the adapter a ModelExport's `select:` chose, with every candidate's score

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def job_states(self) -> frozenset[JobState]:
        return frozenset(j.state for j in self.jobs)

    @property
    def job_summary(self) -> str:
        """Its jobs' observations in words, each distinct one once ("" without jobs): for people."""
        return "; ".join(dict.fromkeys(j.summary for j in self.jobs))

    def job_active(self) -> bool:
        """A job launched before this plan is still queued or running."""
        return any(j.active for j in self.jobs)


@dataclass(frozen=True)
class Blocker:
    """A reason the plan must not be applied (exit 3): protection, mass deletion, dependants, or a
    `[policy]` of ftctl.toml (`policy_key` names it; `file:line` is the manifest that breaks it, or
    for a plan total the key's line in ftctl.toml). Only a policy blocker can be overridden at apply."""

    address: str
    code: str
    message: str
    policy_key: str = ""
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        """`file:line` ('' when the blocker has no source position)."""
        return f"{self.file}:{self.line}" if self.file and self.line else self.file


@dataclass(frozen=True)
class JobEstimate:
    """What one job the plan launches (now, or later once what it waits for exists) is expected to
    take: tokens, one device's throughput at the model's size, wall-clock hours, device-hours (hours
    x devices: GPU-hours on a GPU kind, CPU-hours on `cpu`) and cost. `basis` says what numbers went
    in, for people; `known` is False when an input was unknown (the basis says which): such a job
    counts 0 in the totals. Built by `reconciler.estimates`."""

    address: str
    job: str  # train | evaluate
    device: str  # cpu, gpu, or a device kind of ftctl.toml's [estimates.devices]
    devices: int  # GPUs (CPU processes on cpu) it holds
    tokens: int
    tokens_per_second: float
    hours: float
    device_hours: float
    cost: float
    basis: str
    later: bool = False  # launched once what it waits for exists (the plan causes it)
    known: bool = True

    @property
    def on_gpu(self) -> bool:
        return self.device != "cpu"


@dataclass(frozen=True)
class CostEstimate:
    """The plan's jobs' estimates and their totals (GPU-hours and CPU-hours apart, cost together)."""

    jobs: tuple[JobEstimate, ...] = ()
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    cost: float = 0.0
    currency: str = "USD"

    @classmethod
    def of(cls, jobs: tuple[JobEstimate, ...], *, currency: str = "USD") -> CostEstimate:
        known = [j for j in jobs if j.known]
        return cls(jobs, sum((j.device_hours for j in known if j.on_gpu), 0.0),
                   sum((j.device_hours for j in known if not j.on_gpu), 0.0), sum((j.cost for j in known), 0.0), currency)

    def unknown(self) -> list[JobEstimate]:
        return [j for j in self.jobs if not j.known]


@dataclass(frozen=True)
class Policy:
    prune: bool = False
    max_deletions: int = 5


@dataclass(frozen=True)
class Selection:
    """What a partial plan covers: the manifest files named, `--target` addresses (each with what
    it depends on) and `-l` label selectors. Objects outside it are neither planned nor deleted."""

    files: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    selectors: tuple[str, ...] = ()

    def describe(self) -> str:
        """The selection in the words of the command line, for plan headers."""
        parts = [*self.files, *(f"--target {t}" for t in self.targets), *(f"-l {s}" for s in self.selectors)]
        return " ".join(parts)


@dataclass(frozen=True)
class Comparison:
    """One metric of one evaluation the store has results for: the base model's figure beside an
    adapter's (what fine-tuning changed), as the plan read them (`evaluations.compare`)."""

    evaluation: str
    metric: str
    base_label: str
    base: float
    adapter_label: str
    adapter: float

    @property
    def delta(self) -> float:
        return self.adapter - self.base


@dataclass(frozen=True)
class Plan:
    store: str
    serial: int
    read: dict[str, str]  # `table/id` and `@Kind/name` -> fingerprint, for the stale check
    changes: tuple[Change, ...] = ()
    blockers: tuple[Blocker, ...] = ()
    policy: Policy = field(default_factory=Policy)
    labels: dict[str, str] = field(default_factory=dict)  # store id -> Kind/name, for ids shown in diffs
    partial: Selection | None = None  # None: the whole project (what no manifest declares is an orphan)
    replace: tuple[str, ...] = ()  # addresses replaced on request (`--replace`), changed or not
    # The store's identity its job names carry: the store's own, or (a store without one) the one
    # apply writes into it.
    store_id: str = ""
    store_exists: bool = True  # False: the store is not there yet, and apply would create it (`--create-store`)
    evaluations: tuple[Comparison, ...] = ()  # base vs adapter of the evaluations planned, from the results the store has
    estimate: CostEstimate | None = None  # what the jobs it launches (now and later) take (None: it launches none)
    format_version: int = FORMAT_VERSION

    def actionable(self) -> list[Change]:
        """Changes apply can carry out now (not those waiting for a job's output)."""
        return [c for c in self.changes if (c.action.is_change() or c.launches) and not c.waits_for]

    def has_changes(self) -> bool:
        return bool(self.actionable())

    def is_blocked(self) -> bool:
        return bool(self.blockers)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for change in self.changes:
            out[change.action.value] += 1
        return out

    def digest(self) -> str:
        """SHA-256 of the plan's whole canonical content: every field of every value in it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Every field; a whole-project plan without `--replace` leaves those two keys out, a plan
        without evaluation results leaves out `evaluations`, a change that reuses nothing `reuses`, one
        that chooses no adapter `chosen`, a plan without jobs `estimate`, a blocker of no policy its
        policy key and position, and a plan of a store that exists leaves out `store_exists` (it says
        `"store_exists": false` otherwise)."""
        data: dict[str, Any] = _plain(self)
        for key in ("partial", "replace", "evaluations", "estimate"):
            if not data[key]:
                del data[key]
        for blocker in data["blockers"]:
            for key in ("policy_key", "file", "line"):
                if not blocker[key]:
                    del blocker[key]
        if self.store_exists:
            del data["store_exists"]
        for change in data["changes"]:  # a change that reuses or chooses nothing leaves the key out
            if not change["reuses"]:
                del change["reuses"]
            if change["chosen"] is None:
                del change["chosen"]
        return data

    def to_json(self, *, key: str | None = None) -> str:
        """The plan file: the plan, its digest, and with a key the digest's signature."""
        data = {**self.to_dict(), "digest": self.digest()}
        if key:
            data["signature"] = sign(data["digest"], key)
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, key: str | None = None, name: str = "the plan file") -> Plan:
        """Read a plan file and check its digest (and, given a key, its signature); `name` says
        which file in the messages."""
        data = _plan_data(text)
        try:
            plan = cls.from_dict(data)
        except KeyError as exc:
            raise PlanFormatError(f"malformed plan file: missing key {str(exc)[:200]}") from exc
        except (TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            raise PlanFormatError(f"malformed plan file: {type(exc).__name__}: {str(exc)[:200]}") from exc
        _check_integrity(plan, data, key=key, name=name)
        return plan

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            store=data["store"],
            serial=int(data["serial"]),
            read=dict(data["read"]),
            changes=tuple(_change(c) for c in data["changes"]),
            blockers=tuple(_blocker(b) for b in data["blockers"]),
            policy=Policy(**data["policy"]),
            labels=dict(data.get("labels", {})),
            partial=_selection(data["partial"]) if data.get("partial") is not None else None,
            replace=tuple(str(a) for a in data.get("replace", ())),
            store_id=str(data["store_id"]),
            store_exists=data.get("store_exists", True) is not False,
            evaluations=tuple(_comparison(c) for c in data.get("evaluations", ())),
            estimate=_estimate(data["estimate"]) if data.get("estimate") else None,
            format_version=int(data["format_version"]),
        )


def _blocker(data: dict[str, Any]) -> Blocker:
    return Blocker(str(data["address"]), str(data["code"]), str(data["message"]), str(data.get("policy_key", "")),
                   str(data.get("file", "")), int(data.get("line", 0)))


def _selection(data: dict[str, Any]) -> Selection:
    return Selection(**{k: tuple(str(v) for v in data[k]) for k in ("files", "targets", "selectors")})


def _estimate(data: dict[str, Any]) -> CostEstimate:
    jobs = tuple(JobEstimate(str(j["address"]), str(j["job"]), str(j["device"]), int(j["devices"]), int(j["tokens"]),
                             float(j["tokens_per_second"]), float(j["hours"]), float(j["device_hours"]), float(j["cost"]),
                             str(j["basis"]), j["later"] is True, j["known"] is True) for j in data["jobs"])
    return CostEstimate(jobs, float(data["gpu_hours"]), float(data["cpu_hours"]), float(data["cost"]), str(data["currency"]))


def _comparison(data: dict[str, Any]) -> Comparison:
    return Comparison(evaluation=str(data["evaluation"]), metric=str(data["metric"]), base_label=str(data["base_label"]),
                      base=float(data["base"]), adapter_label=str(data["adapter_label"]), adapter=float(data["adapter"]))


def sign(plan_digest: str, key: str) -> str:
    """HMAC-SHA256 of a plan's digest under a key (FTCTL_PLAN_KEY)."""
    return hmac.new(key.encode("utf-8"), plan_digest.encode("ascii"), hashlib.sha256).hexdigest()


def _plan_data(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise PlanFormatError(f"not a plan file (invalid JSON: {str(exc)[:200]})") from exc
    if not isinstance(data, dict) or "format_version" not in data:
        raise PlanFormatError("not a plan file (no format_version)")
    version = data["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise PlanFormatError(f"plan format_version {version!r} (this ftctl reads {FORMAT_VERSION})")
    return data


def _check_integrity(plan: Plan, data: dict[str, Any], *, key: str | None, name: str) -> None:
    """The file's digest is the digest of what was read; with a key, the signature is the key's."""
    written = data.get("digest")
    if not isinstance(written, str) or not written:
        raise PlanIntegrityError(f"{name} has no digest: it was not written by `ftctl plan -o` (or by an older ftctl); "
                                 "run `ftctl plan -o` again")
    actual = plan.digest()
    if not hmac.compare_digest(written.encode("utf-8", "replace"), actual.encode("ascii")):
        raise PlanIntegrityError(f"{name} was modified after `ftctl plan` wrote it (digest mismatch)")
    if not key:
        return
    signature = data.get("signature")
    if not isinstance(signature, str) or not signature:
        raise PlanIntegrityError(f"{name} is not signed, and FTCTL_PLAN_KEY is set: only a plan signed with that key "
                                 "(`ftctl plan -o` with the same FTCTL_PLAN_KEY) is applied")
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), sign(actual, key).encode("ascii")):
        raise PlanIntegrityError(f"{name} has a wrong signature: it was signed with another FTCTL_PLAN_KEY")


_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, looked up once per class


_LEAVES = frozenset({str, int, float, bool, type(None)})  # most values of a plan: as they are, without asking is_dataclass


def _plain(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, the rest as it is: what `asdict` gives for JSON, without
    its deep copy of every leaf (a 1,000-object plan's digest took 0.35 s through asdict)."""
    if type(value) in _LEAVES:
        return value
    if is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS.get(type(value)) or _FIELDS.setdefault(type(value), tuple(f.name for f in fields(value)))
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a plan holds")


def _change(data: dict[str, Any]) -> Change:
    record = data.get("record")
    return Change(
        kind=data["kind"],
        name=data["name"],
        action=Action(data["action"]),
        reason=data["reason"],
        consequence=Consequence(data["consequence"]),
        wave=int(data["wave"]),
        drift=bool(data["drift"]),
        fields=tuple(FieldDiff(**f) for f in data["fields"]),
        ops=tuple(RowOp(**o) for o in data["ops"]),
        record=Record(**{**record, "row_ids": tuple(record["row_ids"])}) if record else None,
        waits_for=tuple(data["waits_for"]),
        launches=tuple(Launch(**launch) for launch in data.get("launches", [])),
        jobs=tuple(_observed_job(j) for j in data["jobs"]),
        adopts=tuple(str(i) for i in data.get("adopts", ())),
        orphan=data["orphan"] is True,
        reuses=tuple(Reuse(**r) for r in data.get("reuses", ())),
        chosen=_choice(data["chosen"]) if data.get("chosen") else None,
    )


def _choice(data: dict[str, Any]) -> Choice:
    return Choice(str(data["evaluation"]), str(data["metric"]), str(data["mode"]), str(data["adapter"]),
                  {str(k): float(v) for k, v in data["scores"].items()}, tuple(str(a) for a in data["pending"]))


def _observed_job(data: dict[str, Any]) -> ObservedJob:
    def count(value: Any) -> int | None:
        return None if value is None else int(value)

    return ObservedJob(str(data["job_name"]), JobState(data["state"]), int(data["attempt"]), count(data["step"]),
                     count(data["total_steps"]), {str(k): float(v) for k, v in data["metrics"].items()},
                     str(data["error_class"]), str(data["summary"]))
