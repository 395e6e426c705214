"""Use-cases: wiring the pure core (loader, rules) to the I/O edges (files, store, Hub).

`validate` is what `ftctl validate` runs. The CLI parses arguments and renders; this module
decides what to read and in which order, and returns values.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.backends.local import LocalBackend
from reconciler.desired import PlanFacts
from reconciler.diagnostics import Diagnostic
from reconciler.executor import ApplyResult, StalePlanError, apply_plan
from reconciler.facts import LocalFacts
from reconciler.health import ObjectStatus, assess
from reconciler.jobinput import DEFAULT_TRACKING_URI, JobSettings, job_name
from reconciler.live import Snapshot
from reconciler.localfiles import gather_facts
from reconciler.manifests import Manifest, load_paths, resolve_positions
from reconciler.manifests.cache import ParseCache
from reconciler.plan import Change, Plan, PlanFormatError, Policy
from reconciler.planner import build_plan
from reconciler.rules import RuleContext, check_all
from reconciler.runtime import JobObservation


class EngineError(Exception):
    """An operational failure (not a problem in the manifests): unreadable store, missing schemas."""


@dataclass(frozen=True)
class ValidationReport:
    diagnostics: list[Diagnostic]
    manifests: list[Manifest]
    files: list[str]
    documents: int

    def has_errors(self) -> bool:
        return any(d.severity.is_error() for d in self.diagnostics)


def schemas_dir() -> Path:
    """The committed schemas/ folder (beside the package in a checkout or editable install)."""
    override = os.environ.get("FTCTL_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "schemas"


def load_body_schemas(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """Config-body JSON Schemas by config type; missing files mean those bodies go unchecked."""
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
    return _validate(paths, offline=offline, snapshot=read_store(store), environ=environ, use_cache=use_cache)[0]


def _validate(
    paths: Sequence[str],
    *,
    offline: bool,
    snapshot: Snapshot | None,
    environ: Mapping[str, str] | None,
    use_cache: bool,
) -> tuple[ValidationReport, LocalFacts]:
    loaded = load_paths(paths, cache=ParseCache.for_inputs(paths) if use_cache else None)
    facts = gather_facts(loaded.manifests)
    ctx = RuleContext(loaded.manifests, facts=facts, snapshot=snapshot, body_schemas=load_body_schemas())
    diagnostics = loaded.diagnostics + check_all(ctx)
    diagnostics += _online(loaded.manifests, offline=offline, environ=os.environ if environ is None else environ)
    diagnostics = resolve_positions(diagnostics, loaded.sources)
    report = ValidationReport(sorted(diagnostics, key=Diagnostic.sort_key), loaded.manifests, loaded.files, loaded.documents)
    return report, facts


def _online(manifests: list[Manifest], *, offline: bool, environ: Mapping[str, str]) -> list[Diagnostic]:
    from reconciler.online.hub import check_hub

    return check_hub(manifests, environ=environ, offline=offline)


@dataclass(frozen=True)
class PlanReport:
    """A plan, or the validation errors that stopped it (then `plan` is None)."""

    validation: ValidationReport
    plan: Plan | None


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
) -> PlanReport:
    """Validate the manifests, read the store once, and build the plan (pure) from both."""
    environ = os.environ if environ is None else environ
    if snapshot is None:
        snapshot = _read_for_plan(store)
    report, local = _validate(paths, offline=offline, snapshot=snapshot, environ=environ, use_cache=use_cache)
    if report.has_errors():
        return PlanReport(report, None)
    from reconciler.online.hubinfo import gather_hub_facts

    settings = job_settings(environ)
    facts = PlanFacts(local=local, hub=gather_hub_facts(report.manifests, environ=environ, offline=offline), root=os.getcwd(),
                      jobs=settings, observations=observe_jobs(snapshot, local_backend(settings, environ)))
    plan = build_plan(
        report.manifests, snapshot, policy=policy, facts=facts, seed=seed or environ.get("FTCTL_PLAN_SEED") or uuid.uuid4().hex
    )
    return PlanReport(report, plan)


def job_settings(environ: Mapping[str, str]) -> JobSettings:
    """Where jobs run and log: FTCTL_JOBS_DIR (default .app/jobs), MLFLOW_TRACKING_URI (default a
    SQLite MLflow store under .app/), MLFLOW_REGISTRY_URI."""
    return JobSettings(
        jobs_root=environ.get("FTCTL_JOBS_DIR") or ".app/jobs",
        tracking_uri=environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
        registry_uri=environ.get("MLFLOW_REGISTRY_URI") or None,
        experiment=environ.get("FTCTL_MLFLOW_EXPERIMENT") or "ftctl",
    )


def local_backend(settings: JobSettings, environ: Mapping[str, str]) -> LocalBackend:
    """The backend that runs jobs: FTCTL_BACKEND=local (default) or fake (tests)."""
    jobs = max(1, int(environ.get("FTCTL_MAX_RUNNING_JOBS") or 1))
    choice = environ.get("FTCTL_BACKEND") or "local"
    if choice == "fake":
        from reconciler.backends.fake import FakeBackend

        return FakeBackend(settings.jobs_root, max_running=jobs, environ=dict(environ))
    if choice != "local":
        raise EngineError(f"FTCTL_BACKEND={choice!r}: this ftctl runs jobs with 'local' (or 'fake' in tests)")
    return LocalBackend(settings.jobs_root, max_running=jobs, environ=dict(environ))


def job_names(snapshot: Snapshot) -> list[tuple[str, str, str]]:
    """(kind, name, job name) of every job the managed objects' current generations run."""
    out = []
    for record in snapshot.managed.values():
        if record.kind == "EvaluationJob":
            out += [(record.kind, record.name, job_name(record.kind, record.name, record.generation, i)) for i in range(len(record.row_ids))]
        elif record.kind in ("FineTuningJob", "ModelExport"):
            out.append((record.kind, record.name, job_name(record.kind, record.name, record.generation)))
    return out


def observe_jobs(snapshot: Snapshot, backend: LocalBackend) -> dict[str, JobObservation]:
    """What the backend says of each managed job. Read-only: plan and status start nothing."""
    return {name: backend.observe(name) for _, _, name in job_names(snapshot)}


def _read_for_plan(store: str | None) -> Snapshot:
    from reconciler.store.location import StoreError
    from reconciler.store.read import read_snapshot

    try:
        return read_snapshot(store, missing_ok=True)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc


def read_plan_file(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as handle:
            return Plan.from_json(handle.read())
    except OSError as exc:
        raise EngineError(f"cannot read plan file {path}: {exc.strerror}") from exc
    except PlanFormatError as exc:
        raise EngineError(f"{path}: {exc}") from exc


def execute_plan(
    plan: Plan,
    *,
    store: str | None,
    lock_wait_s: float,
    environ: Mapping[str, str] | None = None,
    on_step: Callable[[int, int, Sequence[Change]], None] | None = None,
) -> ApplyResult:
    """Apply a plan to the store it was made for: lock, stale check, journaled steps."""
    from reconciler.store.location import StoreError, store_url
    from reconciler.store.write import LockedError, StoreWriter

    environ = os.environ if environ is None else environ
    target = store_url(store)
    if plan.store and plan.store != target:
        raise EngineError(f"the plan was made for {plan.store}, not {target}; plan against this store")
    try:
        writer = StoreWriter(store)
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    try:
        backend = local_backend(job_settings(environ), environ)
        return apply_plan(plan, writer, actor=actor(environ), commit_sha=commit_sha(environ), lock_wait_s=lock_wait_s,
                          on_step=on_step, launcher=backend)
    except (LockedError, StalePlanError) as exc:
        raise EngineError(str(exc)) from exc
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    finally:
        writer.close()


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
class ImportReport:
    files: list[str]
    objects: int
    plan: PlanReport | None = None
    applied: ApplyResult | None = None


def export_manifests(store: str | None, out_dir: str, *, unmanaged_only: bool = False, overwrite: bool = False) -> ImportReport:
    """Write manifests for the store's rows (all of them, or those ftctl does not manage) to out_dir."""
    from reconciler.importer import Layout, manifests_for, to_yaml

    snapshot = _read_for_plan(store)
    layout = Layout(root=os.getcwd(), out_dir=os.path.abspath(out_dir))
    files = manifests_for(snapshot, layout=layout, unmanaged_only=unmanaged_only)
    targets = {os.path.join(out_dir, name): docs for name, docs in sorted(files.items())}
    clashes = [path for path in targets if os.path.exists(path)]
    if clashes and not overwrite:
        raise EngineError(f"{', '.join(clashes)} already exist; choose another folder (or --force to overwrite)")
    os.makedirs(out_dir, exist_ok=True)
    header = f"Written by ftctl from {snapshot.source}; each manifest names the row it came from (ftctl.io/store-id)."
    for path, docs in targets.items():
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(to_yaml(docs, header=header))
    return ImportReport(sorted(targets), sum(len(d) for d in files.values()))


def import_rows(store: str | None, out_dir: str, *, lock_wait_s: float, overwrite: bool = False) -> ImportReport:
    """Write manifests for the rows ftctl does not manage yet, then adopt those rows (one apply)."""
    written = export_manifests(store, out_dir, unmanaged_only=True, overwrite=overwrite)
    if not written.objects:
        return written
    report = make_plan([out_dir], store=store, policy=Policy(), offline=True, use_cache=False)
    if report.plan is None or report.plan.is_blocked():
        return ImportReport(written.files, written.objects, report)
    applied = execute_plan(report.plan, store=store, lock_wait_s=lock_wait_s)
    return ImportReport(written.files, written.objects, report, applied)


def status(paths: Sequence[str], *, store: str | None, offline: bool) -> tuple[PlanReport, list[ObjectStatus]]:
    snapshot = _read_for_plan(store)
    report = make_plan(paths, store=store, policy=Policy(), offline=offline, snapshot=snapshot)
    return report, (assess(report.plan, snapshot) if report.plan else [])


def set_protection(store: str | None, address: str, protected: bool) -> None:
    from reconciler.store.location import StoreError
    from reconciler.store.write import StoreWriter

    kind, _, name = address.partition("/")
    writer = StoreWriter(store)
    try:
        if not writer.set_protected(kind, name, protected):
            raise EngineError(f"{address} is not managed by ftctl in {writer.url}")
    except StoreError as exc:
        raise EngineError(str(exc)) from exc
    finally:
        writer.close()


def start_queued_jobs(environ: Mapping[str, str] | None = None) -> list[str]:
    """Start queued jobs while slots are free: apply does this first, and --wait between its plans.
    Plan and status never do: they only read."""
    environ = os.environ if environ is None else environ
    return local_backend(job_settings(environ), environ).start_queued()


def find_job(store: str | None, address: str, environ: Mapping[str, str] | None = None) -> tuple[LocalBackend, list[str]]:
    """The backend and the job names of a managed object's current generation (`Kind/name`)."""
    environ = os.environ if environ is None else environ
    snapshot = _read_for_plan(store)
    kind, _, name = address.partition("/")
    names = [j for k, n, j in job_names(snapshot) if (k, n) == (kind, name)]
    if not names:
        raise EngineError(f"{address} runs no job in this store (is it a managed FineTuningJob, EvaluationJob or ModelExport?)")
    return local_backend(job_settings(environ), environ), names
