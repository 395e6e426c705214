"""Use-cases: wiring the pure core (loader, rules) to the I/O edges (files, store, Hub).

`validate` is what `ftctl validate` runs. The CLI parses arguments and renders; this module
decides what to read and in which order, and returns values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.addresses import Address
from reconciler.backends import Backend, BackendError
from reconciler.backends.local import LocalBackend
from reconciler.desired import PlanFacts
from reconciler.diagnostics import Diagnostic
from reconciler.drift import DriftReport, find_drift
from reconciler.executor import LOCK_TTL_S, ApplyResult, StalePlanError, apply_plan
from reconciler.facts import LocalFacts
from reconciler.generations import ObjectHistory
from reconciler.graph import Graph, Node
from reconciler.health import ObjectStatus, assess
from reconciler.history import ImportedRun, imported_runs
from reconciler.inspection import (
    InspectError,
    Item,
    JobStatus,
    describe,
    find,
    items,
    kinds_named,
    parse_address,
)
from reconciler.jobinput import DEFAULT_TRACKING_URI, JobSettings, job_prefix
from reconciler.live import Snapshot
from reconciler.localfiles import gather_facts
from reconciler.manifests import Manifest, load_paths, resolve_positions
from reconciler.manifests.cache import ParseCache
from reconciler.plan import Change, Plan, PlanFormatError, PlanIntegrityError, Policy
from reconciler.planner import build_plan
from reconciler.planverify import PlanRefusedError
from reconciler.provenance import gather_provenance
from reconciler.rules import RuleContext, check_all
from reconciler.runtime import BACKENDS, JobObservation, JobState
from reconciler.safeio import ReadRoots, UnsafePathError, project_root, read_checked
from reconciler.selection import SelectArgs, SelectionError, choose
from reconciler.store.events import Event
from reconciler.store.snapshot_file import Pulled
from reconciler.sweeps import expand as expand_sweeps
from reconciler.sweeps import fold as fold_trials


class EngineError(Exception):
    """An operational failure (not a problem in the manifests): unreadable store, missing schemas."""


@dataclass(frozen=True)
class ValidationReport:
    diagnostics: list[Diagnostic]
    manifests: list[Manifest]
    files: list[str]
    documents: int
    sweeps: dict[Node, tuple[Node, ...]] = field(default_factory=dict)  # a sweep -> its trials (`sweeps.expand`)

    def has_errors(self) -> bool:
        return any(d.severity.is_error() for d in self.diagnostics)


def schemas_dir() -> Path:
    """The schemas ftctl ships: package data in an installed wheel; in a checkout or editable
    install, reconciler/_schemas is a link to the committed schemas/."""
    return Path(__file__).resolve().parent / "_schemas"


def load_body_schemas(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """Config-body JSON Schemas by config type; a body whose schema is missing is CF-107."""
    folder = (folder or schemas_dir()) / "config-bodies"
    out: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.schema.json")):
            out[path.name.removesuffix(".schema.json")] = json.loads(path.read_text(encoding="utf-8"))
    return out


def read_store(store: str | None) -> Snapshot | None:
    if store is None:
        return None
    from reconciler.store.location import StoreError
    from reconciler.store.read import read_snapshot

    store = project([], store).store  # a URL that is not SQLite is refused
    try:
        return read_snapshot(store)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc


def validate(
    paths: Sequence[str],
    *,
    offline: bool,
    store: str | None = None,
    environ: Mapping[str, str] | None = None,
    use_cache: bool = True,
) -> ValidationReport:
    """The diagnostics of the manifests. Some files of a project (not a folder) are checked against
    the default store too when it exists, where the names the other files declare are managed."""
    if store is None and named_files(paths):
        default = project(paths, None, environ).store  # the project root's store, as plan reads it
        store = default if store_exists(default) else None
    return _validate(paths, offline=offline, snapshot=read_store(store), environ=environ, use_cache=use_cache)[0]


def named_files(paths: Sequence[str]) -> list[str]:
    """The paths that name files, not folders: a command over them covers part of a project."""
    return [p for p in paths if os.path.isfile(p)]


def _validate(
    paths: Sequence[str],
    *,
    offline: bool,
    snapshot: Snapshot | None,
    environ: Mapping[str, str] | None,
    use_cache: bool,
) -> tuple[ValidationReport, LocalFacts, Graph]:
    """The report, the local facts gathered for the rules and the reference graph they built:
    planning reuses both."""
    roots = read_roots(paths, environ)
    loaded = load_paths(paths, cache=ParseCache.for_inputs(paths) if use_cache else None, roots=roots)
    swept = expand_sweeps(loaded.manifests)  # a matrix's trials are objects of their own from here on
    checked = swept.manifests + loaded.salvaged  # documents with schema errors too: all errors at once
    facts = gather_facts(checked, roots=roots)
    ctx = RuleContext(checked, facts=facts, snapshot=snapshot, body_schemas=load_body_schemas(), partial=bool(named_files(paths)))
    diagnostics = loaded.diagnostics + swept.diagnostics + fold_trials(check_all(ctx), swept.sweep_of())
    diagnostics += _online(checked, offline=offline, environ=os.environ if environ is None else environ)
    diagnostics += _policy_diagnostics(checked, paths, environ)
    diagnostics = resolve_positions(diagnostics, loaded.sources)
    sweeps = {("FineTuningJob", job): tuple((t.kind, t.name) for t in trials) for job, trials in swept.trials.items()}
    report = ValidationReport(sorted(diagnostics, key=Diagnostic.sort_key), swept.manifests, loaded.files, loaded.documents, sweeps)
    return report, facts, ctx.graph


def _policy_diagnostics(manifests: list[Manifest], paths: Sequence[str], environ: Mapping[str, str] | None) -> list[Diagnostic]:
    """What the manifests break of the project's [policy] (PO-003..PO-007): errors for `validate`,
    blockers of the objects a plan changes (`make_plan`)."""
    from reconciler.policy import check_manifests

    root = project_root(paths)
    settings, _ = project_policy(root)
    backend = effective_environ(environ, root).get("FTCTL_BACKEND") or "local"
    return check_manifests(manifests, settings, default_backend=backend)


def read_roots(paths: Sequence[str], environ: Mapping[str, str] | None) -> ReadRoots:
    """Where manifests and the files they name may be read from: the project root of `paths` and
    the folders in FTCTL_READ_ROOTS (or read_roots in ftctl.toml)."""
    try:
        return ReadRoots.for_paths(paths, effective_environ(environ, project_root(paths)))
    except ValueError as exc:
        raise EngineError(str(exc)) from exc


def _online(manifests: list[Manifest], *, offline: bool, environ: Mapping[str, str]) -> list[Diagnostic]:
    from reconciler.online.hub import check_hub

    return check_hub(manifests, environ=environ, offline=offline)


@dataclass(frozen=True)
class PlanReport:
    """A plan, or the validation errors that stopped it (then `plan` is None)."""

    validation: ValidationReport
    plan: Plan | None
    observations: dict[str, JobObservation] = field(default_factory=dict)  # job name -> what its backend said


def make_plan(
    paths: Sequence[str],
    *,
    store: str | None,
    policy: Policy,
    offline: bool,
    environ: Mapping[str, str] | None = None,
    use_cache: bool = True,
    seed: str | None = None,
    snapshot: Snapshot | None = None,
    select: SelectArgs | None = None,
) -> PlanReport:
    """Validate the manifests, read the store once, and build the plan (pure) from both. A plan over
    files (not folders), `--target`s or `-l` selectors is partial (`selection.choose`). The plan
    says whether the store exists (`store_exists`): apply would create it."""
    where = project(paths, store, environ)
    environ, store = where.environ, where.store
    if snapshot is None:
        snapshot = _read_for_plan(store)
    report, local, graph = _validate(paths, offline=offline, snapshot=snapshot, environ=environ, use_cache=use_cache)
    report, policy_diags = _without_policy(report)
    if report.has_errors():
        return PlanReport(report, None)
    try:
        scoped = choose(report.manifests, graph, select or SelectArgs(), files=named_files(paths), prune=policy.prune,
                        groups=report.sweeps)
    except SelectionError as exc:
        raise EngineError(str(exc)) from exc
    from reconciler.backends.cml_registry import gather_registry_facts
    from reconciler.online.hubinfo import gather_hub_facts

    registry, registry_diags = gather_registry_facts(report.manifests, environ=environ, offline=offline)
    if registry_diags:
        report = dataclasses.replace(report, diagnostics=sorted(report.diagnostics + registry_diags, key=Diagnostic.sort_key))
        if report.has_errors():
            return PlanReport(report, None)
    seed = seed or environ.get("FTCTL_PLAN_SEED") or uuid.uuid4().hex
    snapshot = identified(snapshot, seed)
    settings = store_jobs(job_settings(environ), snapshot.store_id)
    observations = dict(snapshot.jobs) if snapshot.jobs is not None else observe_jobs(snapshot, Backends(settings, environ, where.root))
    hub = gather_hub_facts(report.manifests, environ=environ, offline=offline)
    provenance = gather_provenance(report.manifests, paths=paths, root=where.root, roots=read_roots(paths, environ), environ=environ,
                                   hub=hub, registry=registry)
    facts = PlanFacts(local=local, hub=hub, root=where.root,
                      jobs=settings, observations=observations, registry=registry, provenance=provenance)
    plan = build_plan(scoped.manifests, snapshot, policy=policy, facts=facts, seed=seed,
                      graph=graph if len(scoped.manifests) == len(report.manifests) else None,
                      partial=scoped.partial, replace_addresses=scoped.replace)
    plan = _gated(plan, scoped.manifests, local, policy_diags, where.root)
    if not store_exists(store):
        plan = dataclasses.replace(plan, store_exists=False)
    return PlanReport(report, plan, observations)


def _without_policy(report: ValidationReport) -> tuple[ValidationReport, list[Diagnostic]]:
    """The validation report less the policy diagnostics (a plan blocks on them, exit 3), and those."""
    from reconciler.policy import KEY_OF

    policy = [d for d in report.diagnostics if d.code in KEY_OF]
    if not policy:
        return report, []
    return dataclasses.replace(report, diagnostics=[d for d in report.diagnostics if d.code not in KEY_OF]), policy


def _gated(plan: Plan, manifests: list[Manifest], local: LocalFacts, policy_diags: list[Diagnostic], root: str) -> Plan:
    """The plan with its jobs' cost estimate and the blockers of the project's [policy]."""
    from reconciler.estimates import estimate_plan
    from reconciler.policy import blockers_of, check_totals

    settings, rates = project_policy(root)
    estimate = estimate_plan(plan.changes, manifests, local, rates)
    blockers = blockers_of(policy_diags, plan.changes) + check_totals(estimate, settings)
    return dataclasses.replace(plan, estimate=estimate, blockers=plan.blockers + tuple(blockers))


def missing_store_message(store: str) -> str:
    """The refusal of a write to a store that is not there (`--create-store` creates it)."""
    from reconciler.store.location import shown

    return f"store {shown(store)} does not exist: pass --create-store to create it (or check --store and FINE_TUNING_STUDIO_SQLITE_DB for a typo)"


def store_exists(store: str) -> bool:
    """Whether the store (a resolved location, `Project.store`) is there; apply creates a missing
    one only when asked to (`--create-store`)."""
    from reconciler.store.location import StoreError, exists

    try:
        return exists(store)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc


def identified(snapshot: Snapshot, seed: str) -> Snapshot:
    """A store that has no identity yet (new, or written only by the Studio or an older ftctl) is
    given one at plan time, from the plan's seed, so the job names in the plan are final; apply
    writes it into the store (and refuses a store that has another)."""
    if snapshot.store_id:
        return snapshot
    return dataclasses.replace(snapshot, store_id=str(uuid.UUID(hashlib.sha256(f"store/{seed}".encode()).hexdigest()[:32])))


PROJECT_FILE = "ftctl.toml"
# ftctl.toml keys and the environment variables they give defaults for (the environment wins).
PROJECT_KEYS = {
    "backend": "FTCTL_BACKEND", "jobs_dir": "FTCTL_JOBS_DIR", "max_running_jobs": "FTCTL_MAX_RUNNING_JOBS",
    "cml.api_url": "CDSW_API_URL", "cml.project_id": "CDSW_PROJECT_ID", "cml.runtime_identifier": "FTCTL_CML_RUNTIME",
    "cml.runners_dir": "FTCTL_CML_RUNNERS_DIR", "cml.project_dir": "FTCTL_CML_PROJECT_DIR",
    "cml.run_timeout_s": "FTCTL_CML_RUN_TIMEOUT_S", "cml.request_timeout_s": "FTCTL_CML_REQUEST_TIMEOUT_S",
    "read_roots": "FTCTL_READ_ROOTS",
}


OWN_TABLES = ("policy", "estimates")  # ftctl.toml tables read as they are (`project_policy`), not as environment defaults


def _shown_path(path: str) -> str:
    """A path as diagnostics show it: relative to the current folder when inside it (as manifests' are)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def project_policy(root: str) -> tuple[Any, Any]:
    """The `[policy]` and `[estimates]` of the root's ftctl.toml (`policy.read_settings`): the
    defaults when there is no file or no such table; an unknown or mistyped key is an EngineError
    naming ftctl.toml:line."""
    import tomllib

    from reconciler.policy import SettingsError, read_settings

    project_file = os.path.join(root, PROJECT_FILE)
    if not os.path.isfile(project_file):
        return read_settings({})
    try:
        with open(project_file, "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
        return read_settings(tomllib.loads(text), text=text, file=_shown_path(project_file))
    except (OSError, tomllib.TOMLDecodeError, SettingsError) as exc:
        raise EngineError(str(exc) if isinstance(exc, SettingsError) else f"{project_file}: {exc}") from exc


def effective_environ(environ: Mapping[str, str] | None = None, root: str | None = None) -> Mapping[str, str]:
    """The settings ftctl runs with: the environment, over the defaults in the project root's
    ftctl.toml if there is one (root: the current folder's project root when not given; never
    secrets: the CML API key comes from CDSW_APIV2_KEY only). A relative read root in the file is
    the root's folder."""
    environ = os.environ if environ is None else environ
    root = project_root([]) if root is None else root
    project_file = os.path.join(root, PROJECT_FILE)
    if not os.path.isfile(project_file):
        return environ
    import tomllib

    try:
        with open(project_file, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EngineError(f"{project_file}: {exc}") from exc
    flat = {f"{k}.{sub}" if isinstance(v, dict) else k: x for k, v in data.items() if k not in OWN_TABLES
            for sub, x in (v.items() if isinstance(v, dict) else [(None, v)])}
    unknown = sorted(set(flat) - set(PROJECT_KEYS))
    if unknown:
        raise EngineError(f"{project_file}: unknown setting {', '.join(unknown)} (known: {', '.join(PROJECT_KEYS)})")
    if "read_roots" in flat:
        entries = flat["read_roots"] if isinstance(flat["read_roots"], list) else [flat["read_roots"]]
        flat["read_roots"] = [os.path.join(root, str(entry)) for entry in entries]
    return {**{PROJECT_KEYS[k]: os.pathsep.join(map(str, v)) if isinstance(v, list) else str(v) for k, v in flat.items()},
            **environ}


@dataclass(frozen=True)
class Project:
    """Where a command works: the project root (the nearest folder holding ftctl.toml above the
    manifests, else .git, else their folder; above the current folder for commands without
    manifests), the settings there (`effective_environ`) and the store."""

    root: str
    environ: Mapping[str, str]
    store: str


def project(paths: Sequence[str], store: str | None, environ: Mapping[str, str] | None = None) -> Project:
    """The project of the manifests `paths` (none: the current folder's) and the store a command
    uses: --store, else FINE_TUNING_STUDIO_SQLITE_DB (both as typed: a relative path is the
    current folder's), else the root's .app/state.db. Only SQLite stores (and snapshot files)."""
    from reconciler.store.location import DEFAULT_DB, StoreError, require_sqlite

    root = project_root(paths)
    settings = effective_environ(environ, root)
    location = store or settings.get("FINE_TUNING_STUDIO_SQLITE_DB") or os.path.join(root, DEFAULT_DB)
    try:
        require_sqlite(location)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    return Project(root, settings, location)


def job_settings(environ: Mapping[str, str]) -> JobSettings:
    """Where jobs run and log: FTCTL_BACKEND (the default backend: local or cml), FTCTL_JOBS_DIR
    (default .app/jobs), MLFLOW_TRACKING_URI (default a SQLite MLflow store under .app/),
    MLFLOW_REGISTRY_URI. Relative paths are the project root's: jobs run there (`Backends`)."""
    backend = environ.get("FTCTL_BACKEND") or "local"
    if backend not in (*BACKENDS, "fake"):
        raise EngineError(f"backend {backend!r}: choose local or cml (FTCTL_BACKEND, --backend or {PROJECT_FILE})")
    return JobSettings(
        jobs_root=environ.get("FTCTL_JOBS_DIR") or ".app/jobs",
        tracking_uri=environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
        registry_uri=environ.get("MLFLOW_REGISTRY_URI") or None,
        experiment=environ.get("FTCTL_MLFLOW_EXPERIMENT") or "ftctl",
        backend="local" if backend == "fake" else backend,
    )


def store_jobs(settings: JobSettings, store_id: str) -> JobSettings:
    """A store's own jobs folder, `<jobs folder>/<store id>/`: no two stores share a job's folder."""
    return dataclasses.replace(settings, jobs_root=f"{settings.jobs_root.rstrip('/')}/{store_id}") if store_id else settings


def store_backends(store_id: str, environ: Mapping[str, str], root: str) -> Backends:
    """The backends of a store's jobs: its own jobs folder, run in the project root."""
    return Backends(store_jobs(job_settings(environ), store_id), environ, root)


def local_backend(settings: JobSettings, environ: Mapping[str, str], root: str) -> LocalBackend:
    """The backend that runs jobs on this machine, in the project root; FTCTL_BACKEND=fake (tests)
    stands in a fake for it."""
    jobs = max(1, int(environ.get("FTCTL_MAX_RUNNING_JOBS") or 1))
    if environ.get("FTCTL_BACKEND") == "fake":
        from reconciler.backends.fake import FakeBackend

        return FakeBackend(settings.jobs_root, max_running=jobs, environ=dict(environ), cwd=root)
    return LocalBackend(settings.jobs_root, max_running=jobs, environ=dict(environ), cwd=root)


def cml_backend(settings: JobSettings, environ: Mapping[str, str]) -> Backend:
    from reconciler.backends.cml import CMLBackend, CMLSettings
    from reconciler.backends.cml_http import CMLClient, CMLError

    try:
        client = CMLClient.from_environ(environ)
    except CMLError as exc:
        raise EngineError(f"the cml backend needs the CML API: {exc}") from exc
    return CMLBackend(client, CMLSettings.from_environ(environ), settings.jobs_root, environ)


class Backends:
    """The backends jobs run on, each made when first needed (the CML one needs its API settings).

    Routes a launch to the backend its plan names, and observes jobs where their records say
    they run: the local backend one job at a time, CML with one listing for all of them."""

    def __init__(self, settings: JobSettings, environ: Mapping[str, str], root: str) -> None:
        self.settings, self.environ, self.root = settings, environ, root  # root: the project's, where local jobs run
        self._made: dict[str, Backend] = {}

    def get(self, name: str) -> Backend:
        name = name or "local"
        if name not in self._made:
            if name not in BACKENDS:
                raise EngineError(f"backend {name!r}: this ftctl runs jobs with {' or '.join(BACKENDS)}")
            self._made[name] = (cml_backend(self.settings, self.environ) if name == "cml"
                                else local_backend(self.settings, self.environ, self.root))
        return self._made[name]

    def launch(self, job_name: str, kind: str, job_input: dict[str, Any], *, attempt: int = 1, backend: str = "local") -> JobObservation:
        return self.get(backend).launch(job_name, kind, job_input, attempt=attempt)

    def refusal(self, job_name: str, kind: str, job_input: dict[str, Any], *, backend: str = "local") -> str | None:
        """Why the backend would refuse this launch (its name, runner or outputs), or None."""
        try:
            self.get(backend).check_launch(job_name, kind, job_input)
        except BackendError as exc:
            return str(exc)
        return None

    def observe(self, jobs: Sequence[tuple[str, str]]) -> dict[str, JobObservation]:
        """(job name, backend) pairs -> what each backend says of them."""
        by_backend: dict[str, list[str]] = {}
        for name, backend in jobs:
            by_backend.setdefault(backend or "local", []).append(name)
        out: dict[str, JobObservation] = {}
        for backend, names in by_backend.items():
            out.update(self.get(backend).observe_many(names))
        return out

    def start_queued(self) -> list[str]:
        return self.get("local").start_queued()  # only the local backend queues (CML schedules itself)


def job_prefixes(snapshot: Snapshot) -> list[tuple[str, str, str, str]]:
    """(kind, name, job-name prefix, backend) of every job the managed objects' current generations
    run in this store (a job's full name ends with its input's digest: `jobinput.job_name`)."""
    out = []
    for record in snapshot.managed.values():
        backend = record.backend or "local"
        indices: list[int | None] = list(range(len(record.row_ids))) if record.kind == "EvaluationJob" else [None]
        if record.kind in ("FineTuningJob", "EvaluationJob", "ModelExport"):
            out += [(record.kind, record.name, job_prefix(record.kind, record.name, record.generation, i, store_id=snapshot.store_id),
                     backend) for i in indices]
    return out


def earlier_jobs(snapshot: Snapshot) -> list[tuple[str, str, str, str]]:
    """(kind, name, job name, backend) of the jobs of earlier generations a plan may reuse or a row
    follows (`reuse`): each job `ftctl_lineage` records for a managed object, by its full name."""
    out = []
    for entry in snapshot.lineage:
        record = snapshot.managed.get((entry.kind, entry.name))
        if record is not None and not entry.reused_from:
            out.append((entry.kind, entry.name, entry.job_name, record.backend or "local"))
    return out


def observe_jobs(snapshot: Snapshot, backends: Backends) -> dict[str, JobObservation]:
    """What the backends say of each job of the managed objects (by name prefix: every input's job,
    so a plan can name those it will not adopt). Read-only: plan and status start nothing."""
    by_backend: dict[str, list[str]] = {}
    for _, _, prefix, backend in job_prefixes(snapshot) + earlier_jobs(snapshot):
        by_backend.setdefault(backend, []).append(prefix)
    try:
        return backends.observe([(name, b) for b, prefixes in by_backend.items() for name in backends.get(b).find(prefixes)])
    except BackendError as exc:
        raise EngineError(str(exc)) from exc


def _read_for_plan(store: str | None) -> Snapshot:
    from reconciler.store.location import StoreError
    from reconciler.store.read import read_snapshot

    try:
        return read_snapshot(store, missing_ok=True)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc


PLAN_KEY_ENV = "FTCTL_PLAN_KEY"  # a secret: plan files are signed with it, and must be to be applied


def plan_file_text(plan: Plan, environ: Mapping[str, str] | None = None) -> str:
    """The plan file `plan -o` writes: with its digest, and signed when FTCTL_PLAN_KEY is set."""
    environ = os.environ if environ is None else environ
    return plan.to_json(key=environ.get(PLAN_KEY_ENV) or None)


# The most of a plan file read: ten times the largest plan `make bench` makes (the first plan of its
# 10,000-resource project, 25 MB); a FIFO, a device or anything but a regular file is refused.
PLAN_FILE_LIMIT = 256 * 1024 * 1024


def read_plan_file(path: str, environ: Mapping[str, str] | None = None) -> Plan:
    """A saved plan (a regular file of at most PLAN_FILE_LIMIT bytes), checked against its digest
    (and its signature when FTCTL_PLAN_KEY is set)."""
    environ = os.environ if environ is None else environ
    try:
        text = read_checked(path, os.path.realpath(path), os.stat(path), limit=PLAN_FILE_LIMIT).decode("utf-8")
        return Plan.from_json(text, key=environ.get(PLAN_KEY_ENV) or None, name=path)
    except OSError as exc:
        raise EngineError(f"cannot read plan file {path}: {exc.strerror}") from exc
    except UnsafePathError as exc:
        raise EngineError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise EngineError(f"{path}: not a plan file (not UTF-8 text)") from exc
    except PlanIntegrityError as exc:
        raise EngineError(str(exc)) from exc
    except PlanFormatError as exc:
        raise EngineError(f"{path}: {exc}") from exc


def execute_plan(
    plan: Plan,
    *,
    store: str | None,
    lock_wait_s: float,
    environ: Mapping[str, str] | None = None,
    on_step: Callable[[int, int, Sequence[Change]], None] | None = None,
    paths: Sequence[str] = (),
    override: Any = None,
) -> ApplyResult:
    """Apply a plan to the store it was made for: lock, stale check, journaled steps. `paths`: the
    manifests it was made from (their project root holds the default store and runs the jobs;
    none: the current folder's)."""
    from reconciler.store.location import StoreError, store_url
    from reconciler.store.snapshot_file import is_snapshot_location
    from reconciler.store.write import LockedError, StoreWriter

    if is_snapshot_location(store):
        raise EngineError(f"a snapshot is read-only: apply against the store it came from ({plan.store or 'see `ftctl state pull`'})")
    where = project(paths, store, environ)
    environ, store = where.environ, where.store
    target = store_url(store)
    if plan.store and plan.store != target:
        raise EngineError(f"the plan was made for {plan.store}, not {target}; plan against this store")
    try:
        writer = StoreWriter(store, busy_s=max(lock_wait_s, MIN_BUSY_S))
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    try:
        backends = store_backends(plan.store_id, environ, where.root)
        who = actor(environ)
        override = dataclasses.replace(override, actor=who) if override is not None else None  # `policy.Override`: who waived it
        return apply_plan(plan, writer, actor=who, commit_sha=commit_sha(environ), lock_wait_s=lock_wait_s,
                          lock_ttl_s=lock_ttl(environ), on_step=on_step, launcher=backends, override=override)
    except (LockedError, StalePlanError, PlanRefusedError, BackendError) as exc:
        raise EngineError(str(exc)) from exc
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    finally:
        writer.close()


MIN_BUSY_S = 2.0  # an apply waits at least this long for another process's SQLite transaction


def lock_ttl(environ: Mapping[str, str]) -> float:
    """The apply lease's time to live: FTCTL_LOCK_TTL_S seconds (default 60). A live apply keeps
    renewing it; a paused or stopped one loses it after this long, to another apply."""
    value = environ.get("FTCTL_LOCK_TTL_S")
    if not value:
        return LOCK_TTL_S
    try:
        ttl = float(value)
    except ValueError:
        ttl = 0.0
    if not 0.5 <= ttl < float("inf"):
        raise EngineError(f"FTCTL_LOCK_TTL_S={value!r}: give the lease's time to live in seconds (at least 0.5)")
    return ttl


def actor(environ: Mapping[str, str]) -> str:
    """Who applies: FTCTL_ACTOR, the CI's actor, or user@host."""
    for name in ("FTCTL_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN"):
        if environ.get(name):
            return environ[name]
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no user name on this system (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def commit_sha(environ: Mapping[str, str]) -> str:
    for name in ("FTCTL_COMMIT_SHA", "GITHUB_SHA", "CI_COMMIT_SHA"):
        if environ.get(name):
            return environ[name]
    return ""


@dataclass(frozen=True)
class Skipped:
    """An object `ftctl import` left out: it cannot be expressed as a manifest that validates."""

    address: str  # Kind/name
    why: str  # the first error that stopped it: code and summary


@dataclass(frozen=True)
class ImportReport:
    files: list[str]
    objects: int
    plan: PlanReport | None = None
    applied: ApplyResult | None = None
    variables: tuple[str, ...] = ()  # the environment variables the manifests' secret references name
    skipped: tuple[Skipped, ...] = ()  # objects left out of a partial import (the rest is adopted)


Files = dict[str, list[dict[str, Any]]]


def export_manifests(store: str | None, out_dir: str, *, unmanaged_only: bool = False, overwrite: bool = False) -> ImportReport:
    """Write manifests for the store's rows (all of them, or those ftctl does not manage) to out_dir."""
    from reconciler.importer import variables_to_set

    files, header = _manifests(store, out_dir, unmanaged_only=unmanaged_only)
    written = _write_manifests(files, out_dir, header=header, overwrite=overwrite)
    return ImportReport(written, sum(len(d) for d in files.values()), variables=tuple(variables_to_set(files)))


def _manifests(store: str | None, out_dir: str, *, unmanaged_only: bool) -> tuple[Files, str]:
    """The manifests for the store's rows, by file name, and the header each file gets."""
    from reconciler.importer import Layout, manifests_for, unnamed_secrets

    where = project([], store)
    snapshot = _read_for_plan(where.store)
    layout = Layout(root=where.root, out_dir=os.path.abspath(out_dir))
    files = manifests_for(snapshot, layout=layout, unmanaged_only=unmanaged_only)
    if unnamed_secrets(files):
        raise EngineError(f"{', '.join(unnamed_secrets(files))}: the Studio row holds a secret (a token in text, a URL "
                          "with credentials) that a manifest must not hold; remove it from the row, then export again")
    return files, f"Written by ftctl from {snapshot.source}; each manifest names the row it came from (ftctl.io/store-id)."


def _write_manifests(files: Files, out_dir: str, *, header: str, overwrite: bool) -> list[str]:
    from reconciler.importer import to_yaml

    targets = {os.path.join(out_dir, name): docs for name, docs in sorted(files.items())}
    clashes = [path for path in targets if os.path.exists(path)]
    if clashes and not overwrite:
        raise EngineError(f"{', '.join(clashes)} already exist; choose another folder (or --force to overwrite)")
    os.makedirs(out_dir, exist_ok=True)
    for path, docs in targets.items():
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(to_yaml(docs, header=header))
    return sorted(targets)


def import_rows(store: str | None, out_dir: str, *, lock_wait_s: float, overwrite: bool = False,
                approve: Callable[[Plan], bool] | None = None) -> ImportReport:
    """Write manifests for the rows ftctl does not manage yet, then adopt those rows (one apply)
    if `approve` (the CLI's confirmation; None: no question) agrees to the adoption's plan.
    An object whose manifest does not validate (it cannot be expressed) is left out, with the
    objects that depend on it, and named in the report (`skipped`); the rest is adopted.
    A store that is not there is refused before anything is written (a typo, not an empty store)."""
    from reconciler.importer import variables_to_set
    from reconciler.store.location import StoreError, shown
    from reconciler.store.snapshot_file import is_snapshot_location
    from reconciler.store.write import refuse_unwritable

    if is_snapshot_location(store):
        raise EngineError(f"{store} is a snapshot, read-only: import from the store it came from")
    store = project([], store).store
    if not store_exists(store):
        raise EngineError(f"store {shown(store)} does not exist: nothing to import (check --store and FINE_TUNING_STUDIO_SQLITE_DB for a typo)")
    try:
        refuse_unwritable(store)  # before any manifest is written
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    files, header = _manifests(store, out_dir, unmanaged_only=True)
    if not files:
        return ImportReport([], 0)
    written = _write_manifests(files, out_dir, header=header, overwrite=overwrite)
    report = make_plan([out_dir], store=store, policy=Policy(), offline=True, use_cache=False)
    skipped: list[Skipped] = []
    while report.plan is None and (left_out := _inexpressible(report.validation, files)):
        skipped += left_out
        files = _without(files, {s.address for s in left_out})
        for path in set(written) - {os.path.join(out_dir, name) for name in files}:
            os.remove(path)  # every manifest of that file was left out
        written = _write_manifests(files, out_dir, header=header, overwrite=True) if files else []
        report = make_plan([out_dir], store=store, policy=Policy(), offline=True, use_cache=False) if files else report
        if not files:
            break
    found = ImportReport(written, sum(len(d) for d in files.values()), report, variables=tuple(variables_to_set(files)),
                         skipped=tuple(skipped))
    if not files or report.plan is None or report.plan.is_blocked():
        return found
    if approve is not None and not approve(report.plan):
        return found
    return dataclasses.replace(found, applied=execute_plan(report.plan, store=store, lock_wait_s=lock_wait_s))


def _inexpressible(validation: ValidationReport, files: Files) -> list[Skipped]:
    """The imported objects the validation's errors are about (the first error of each)."""
    ours = {f"{doc['kind']}/{doc['metadata']['name']}" for docs in files.values() for doc in docs}
    out: dict[str, Skipped] = {}
    for diag in validation.diagnostics:
        if diag.severity.is_error() and diag.address in ours and diag.address not in out:
            out[diag.address] = Skipped(diag.address, f"{diag.code} {diag.summary}")
    return list(out.values())


def _without(files: Files, addresses: set[str]) -> Files:
    kept = {name: [d for d in docs if f"{d['kind']}/{d['metadata']['name']}" not in addresses] for name, docs in files.items()}
    return {name: docs for name, docs in kept.items() if docs}


def status(paths: Sequence[str], *, store: str | None, offline: bool, environ: Mapping[str, str] | None = None,
           select: SelectArgs | None = None) -> tuple[PlanReport, list[ObjectStatus], list[JobStatus]]:
    """Each planned object's sync state and health, and the jobs of the managed ones (of the
    selected ones only, for a partial plan)."""
    where = project(paths, store, environ)
    environ, store = where.environ, where.store
    snapshot = _read_for_plan(store)
    report = make_plan(paths, store=store, policy=Policy(), offline=offline, snapshot=snapshot, environ=environ, select=select)
    jobs = job_statuses(snapshot, report.observations, store_backends(snapshot.store_id, environ, where.root))
    if report.plan is not None and report.plan.partial is not None:
        covered = {(c.kind, c.name) for c in report.plan.changes}
        jobs = [j for j in jobs if (j.kind, j.name) in covered]
    return report, (assess(report.plan, snapshot) if report.plan else []), jobs


def job_statuses(snapshot: Snapshot, observations: Mapping[str, JobObservation], backends: Backends) -> list[JobStatus]:
    """Each job of the managed objects' current generations, as its backend last said (with links);
    an adopted job's runs as its rows record them (`history.imported_runs`): ftctl launched none."""
    jobs = []
    imported = {key: runs for key, record in snapshot.managed.items() if (runs := imported_runs(record, snapshot))}
    for (kind, name), runs in sorted(imported.items()):
        jobs += [_imported_status(kind, name, run) for run in runs]
    for kind, name, prefix, backend in sorted(job_prefixes(snapshot)):
        if (kind, name) in imported:
            continue
        found = [observations[n] for n in sorted(observations) if n.startswith(prefix)]
        for obs in found or [JobObservation(prefix.rstrip("-"), JobState.NOT_LAUNCHED)]:
            links = backends.get(backend).links(obs.job_name, obs.external_id) if obs.external_id else {}
            jobs.append(JobStatus(kind, name, obs.job_name, backend, obs.state.value, obs.summary(), obs.external_id, links,
                                  obs.attempt, dict(obs.metrics)))
    return jobs


def _imported_status(kind: str, name: str, run: ImportedRun) -> JobStatus:
    """An adopted run: the Studio's CML job its row records, succeeded when the rows show it, else unknown."""
    state = run.state.value if run.state is not None else "unknown"
    ran = f"ran in the Studio as {run.run}" if run.run else "ran in the Studio (its row records no CML job)"
    made = f"; registered adapter {run.product}" if run.product else ""
    return JobStatus(kind, name, run.run or f"(row {run.row_id})", "studio", state, f"{state} (imported): {ran}{made}", "", {},
                     imported=True)


def set_protection(store: str | None, address: str, protected: bool) -> None:
    from reconciler.store.location import StoreError, exists, resolve_location
    from reconciler.store.write import StoreWriter

    kind, name = _parse_address(address)
    store = project([], store).store
    try:
        if not exists(store):  # protection is of managed objects: a store that is not there has none
            raise StoreError(f"no store at {resolve_location(store)}")
        writer = StoreWriter(store)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    try:
        if not writer.set_protected(kind, name, protected):
            raise EngineError(f"{address} is not managed by ftctl in {writer.url}")
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    finally:
        writer.close()


def _parse_address(text: str) -> tuple[str, str]:
    try:
        address = Address.parse(text)
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    return address.kind, address.name


def start_queued_jobs(environ: Mapping[str, str] | None = None, paths: Sequence[str] = ()) -> list[str]:
    """Start queued jobs while slots are free: apply does this first, and --wait between its plans.
    Plan and status never do: they only read. `paths`: the manifests (their project's jobs)."""
    where = project(paths, None, environ)
    environ = where.environ
    settings = job_settings(environ)
    root = Path(where.root) / settings.jobs_root
    stores = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    try:  # each store has its own jobs folder (`store_jobs`)
        return [job for store_id in stores for job in Backends(store_jobs(settings, store_id), environ, where.root).start_queued()]
    except BackendError as exc:
        raise EngineError(str(exc)) from exc


def find_job(store: str | None, address: str, environ: Mapping[str, str] | None = None,
             paths: Sequence[str] = ()) -> tuple[Backend, list[str]]:
    """The backend and the job names of a managed object's current generation (`Kind/name`); a
    sweep's address (a FineTuningJob with a matrix in the manifests of `paths`, default the current
    folder, read only when the store manages no object by that name) names all its trials' jobs."""
    where = project([], store, environ)
    environ = where.environ
    kind, name = _parse_address(address)
    snapshot = _read_for_plan(where.store)
    prefixes = job_prefixes(snapshot)
    named = {(kind, name)} if (kind, name) in snapshot.managed else set(_trials_of(kind, name, paths or ["."], environ))
    found = [(p, b) for k, n, p, b in prefixes if (k, n) in named]
    if not found:
        raise EngineError(f"{address} runs no job in this store (is it a managed FineTuningJob, EvaluationJob or ModelExport?)")
    if len({b for _, b in found}) > 1:
        raise EngineError(f"{address}: its trials run on several backends ({', '.join(sorted({b for _, b in found}))}): name one trial")
    backend = store_backends(snapshot.store_id, environ, where.root).get(found[0][1])
    try:
        return backend, backend.find(p for p, _ in found)
    except BackendError as exc:
        raise EngineError(str(exc)) from exc


def _trials_of(kind: str, name: str, paths: Sequence[str], environ: Mapping[str, str] | None) -> list[Node]:
    """The trials of the sweep `kind/name` as the manifests of `paths` expand it; none when it is no sweep there."""
    if kind != "FineTuningJob":
        return []
    try:
        loaded = load_paths(paths, cache=None, roots=read_roots(paths, environ))
    except (OSError, ValueError, EngineError):
        return []  # no manifests to read here: the address is then no sweep
    return [(t.kind, t.name) for t in expand_sweeps(loaded.manifests).trials.get(name, ())]


def pull_state(store: str | None, output: str) -> Pulled:
    """Write a snapshot of the store to `output` (`ftctl state pull`): the Studio's export JSON."""
    from reconciler.store.location import StoreError
    from reconciler.store.snapshot_file import pull_to_file

    where = project([], store)
    environ = where.environ
    try:
        return pull_to_file(where.store, output, lambda snapshot: observe_jobs(
            snapshot, store_backends(snapshot.store_id, environ, where.root)))
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    except OSError as exc:
        raise EngineError(f"cannot write {output}: {exc.strerror}") from exc


def drift(paths: Sequence[str], *, store: str | None, offline: bool, environ: Mapping[str, str] | None = None,
          select: SelectArgs | None = None) -> tuple[PlanReport, DriftReport | None]:
    """What differs between the manifests and the store (`ftctl drift`): one read, one plan (as
    `status` makes it), then the pure `drift.find_drift`. The report is None when the manifests do
    not validate (the plan report holds the errors)."""
    where = project(paths, store, environ)
    environ, store = where.environ, where.store
    snapshot = _read_for_plan(store)
    report = make_plan(paths, store=store, policy=Policy(), offline=offline, snapshot=snapshot, environ=environ, select=select)
    return report, (find_drift(report.plan, snapshot) if report.plan else None)


@dataclass(frozen=True)
class Inspected:
    """The store as `ftctl get` and `describe` read it, with each object's status when manifests
    were given (`report`: their plan, or their errors when it is None)."""

    report: PlanReport | None
    snapshot: Snapshot
    items: list[Item]
    statuses: dict[tuple[str, str], ObjectStatus]
    jobs: list[JobStatus]
    events: tuple[Event, ...] = ()  # of the object `events_of` named
    observations: Mapping[str, JobObservation] = field(default_factory=dict)  # what the backends said of the jobs


def inspect_store(kinds: Sequence[str], paths: Sequence[str], *, store: str | None, offline: bool, unmanaged: bool,
                  events_of: tuple[str, str] = ("", ""), environ: Mapping[str, str] | None = None) -> Inspected:
    """Read the store (or snapshot file) once, read-only; a store that is not there is an error.
    With manifests, sync and health are computed as `status` does (one plan, nothing written)."""
    from reconciler.store.events import read_activity
    from reconciler.store.location import StoreError
    from reconciler.store.read import read_snapshot

    where = project(paths, store, environ)
    environ, store = where.environ, where.store
    try:
        snapshot = read_snapshot(store)  # never missing_ok: inspection names a store that is not there
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    report = make_plan(paths, store=store, policy=Policy(), offline=offline, snapshot=snapshot, environ=environ) if paths else None
    if report is not None and report.plan is None:
        return Inspected(report, snapshot, [], {}, [])
    backends = store_backends(snapshot.store_id, environ, where.root)
    observations = report.observations if report else (
        dict(snapshot.jobs) if snapshot.jobs is not None else observe_jobs(snapshot, backends))
    jobs = job_statuses(snapshot, observations, backends)
    statuses = {(s.kind, s.name): s for s in assess(report.plan, snapshot)} if report and report.plan else {}
    try:
        activity = read_activity(store, kind=events_of[0], name=events_of[1])
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    found = items(snapshot, kinds, statuses=statuses, jobs=jobs, updated=activity.updated, unmanaged=unmanaged)
    return Inspected(report, snapshot, found, statuses, jobs, activity.events, observations)


def get_objects(kind: str, name: str | None, paths: Sequence[str], *, store: str | None, offline: bool,
                unmanaged: bool) -> Inspected:
    """`ftctl get KIND [NAME]`: the objects of a kind (by any alias, or all), or the one named."""
    try:
        kinds = kinds_named(kind)
        inspected = inspect_store(kinds, paths, store=store, offline=offline, unmanaged=unmanaged)
        if name is None or (inspected.report is not None and inspected.report.plan is None):
            return inspected
        if len(kinds) != 1:
            raise InspectError(f"get {kind} {name}: name one kind to get one object (e.g. ftctl get dataset {name})")
        return Inspected(inspected.report, inspected.snapshot, find(inspected.items, kinds[0], name), inspected.statuses,
                         inspected.jobs)
    except InspectError as exc:
        raise EngineError(str(exc)) from exc


def describe_object(address: str, paths: Sequence[str], *, store: str | None,
                    offline: bool) -> tuple[PlanReport | None, list[dict[str, Any]]]:
    """`ftctl describe Kind/name`: one document per matching object (unmanaged rows may share a
    name): state, manifest, store rows, jobs, related objects and events. Values as stored."""
    try:
        kind, name = parse_address(address)
        inspected = inspect_store((kind,), paths, store=store, offline=offline, unmanaged=True, events_of=(kind, name))
        if inspected.report is not None and inspected.report.plan is None:
            return inspected.report, []
        found = find(inspected.items, kind, name)
    except InspectError as exc:
        raise EngineError(str(exc)) from exc
    manifests = {(m.kind, m.name): m for m in inspected.report.validation.manifests} if inspected.report else {}
    return inspected.report, [
        describe(inspected.snapshot, item, status=inspected.statuses.get((kind, name)),
                 jobs=[j for j in inspected.jobs if (j.kind, j.name) == (kind, name)] if item.managed else [],
                 manifest=_manifest_document(manifests.get((kind, name))), events=inspected.events if item.managed else [],
                 observations=inspected.observations)
        for item in found]


def _manifest_document(manifest: Manifest | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {"source": f"{manifest.location.file} (document {manifest.location.doc + 1})",
            "at": f"{manifest.location.file}:{_manifest_line(manifest)}",
            "spec": manifest.resource.model_dump(mode="json", exclude_none=True)}


def _manifest_line(manifest: Manifest) -> int:
    """The line of the manifest's `metadata.name` in its file (1 when the file cannot be read now)."""
    from reconciler.diagnostics import Severity

    try:
        text = Path(manifest.location.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 1
    [found] = resolve_positions([Diagnostic("", Severity.INFO, "", location=manifest.at("metadata", "name"))],
                                {manifest.location.file: text})
    return found.location.line if found.location else 1


def object_history(address: str, *, store: str | None, environ: Mapping[str, str] | None = None) -> ObjectHistory:
    """`ftctl history Kind/name`: the object's generations from the store's lineage (`ftctl_lineage`)
    with what the backends say of their jobs (states, metrics, runtime). Read-only; a store that is
    not there, an unknown address or an object without history is an EngineError."""
    from reconciler.generations import HistoryError, jobs_to_observe
    from reconciler.generations import object_history as history_of
    from reconciler.store.location import StoreError
    from reconciler.store.read import read_snapshot

    where = project([], store, environ)
    try:
        kind, name = parse_address(address)
        snapshot = read_snapshot(where.store)
        observations = dict(snapshot.jobs) if snapshot.jobs is not None else store_backends(
            snapshot.store_id, where.environ, where.root).observe(jobs_to_observe(snapshot, kind, name))
        return history_of(snapshot, kind, name, observations)
    except (InspectError, HistoryError, StoreError, BackendError) as exc:
        raise EngineError(str(exc)) from exc
