"""Name rules: every object has a valid name, unique per kind; trained adapter names never clash.

Codes: AD-001 / PR-001 (the Studio's required-name rules), SC-003, NM-001…NM-004 (an Adapter that
names the job which trained it as its `fine_tuning_job` may share that job's `adapter_name`: it is
the adapter the job registered); and the
metadata ftctl reads: a store-id annotation that is not a store id (NM-005), an unknown ftctl.io/
annotation (NM-006), names with invisible or unnormalised characters (NM-007) and names that look
like another name of the same kind (NM-008).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.manifests.loader import Manifest
from reconciler.models import Dataset, FineTuningJob, Model
from reconciler.models.base import ANNOTATION_PREFIX, ANNOTATIONS, STORE_ID_ANNOTATION, IdRef
from reconciler.rules.context import RuleContext
from reconciler.rules.lookalikes import hidden_characters, is_normalised, skeleton

NAME_RE = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,254}[^\x00-\x1f\x7f\s])?$")
REQUIRED_NAME_CODE = {"Adapter": "AD-001", "Prompt": "PR-001"}
STORE_ID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check_names(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.manifests:
        if not m.name.strip():
            code = REQUIRED_NAME_CODE.get(m.kind, "SC-003")
            yield make_diag(code, f"{m.kind} metadata.name is required", location=m.at("metadata", "name"), address=m.kind)
        elif not NAME_RE.fullmatch(m.name):
            yield make_diag("NM-003", f"{m.name!r} is not a valid name", location=m.at("metadata", "name"), address=m.address)
    for kind, names in ctx.by_kind.items():
        for name, group in names.items():
            for dup in group[1:] if name.strip() else []:
                code = "PR-001" if kind == "Prompt" else "NM-001"
                first = group[0].location
                yield make_diag(
                    code,
                    f"{kind} {name!r} is declared twice",
                    location=dup.at("metadata", "name"),
                    address=dup.address,
                    detail=f"first declared in {first.file} (document {first.doc + 1})",
                )
    yield from _adapter_name_clashes(ctx)
    yield from _hub_ids_twice(ctx)
    for m in ctx.manifests:
        yield from _annotations(m)
        yield from _hidden(m)
    yield from _lookalikes(ctx)


def _annotations(m: Manifest) -> Iterator[Diagnostic]:
    for key, value in m.resource.metadata.annotations.items():
        loc = m.at("metadata", "annotations", key)
        if key == STORE_ID_ANNOTATION and not STORE_ID_RE.fullmatch(value):
            yield make_diag("NM-005", f"{key} {value[:80]!r} is not a store id (a UUID)", location=loc, address=m.address)
        elif key.startswith(ANNOTATION_PREFIX) and key not in ANNOTATIONS:
            close = difflib.get_close_matches(key, ANNOTATIONS, n=1, cutoff=0.6)
            hint = f"Did you mean {close[0]!r}? ftctl ignores other {ANNOTATION_PREFIX} keys." if close else None
            yield make_diag("NM-006", f"{key!r} is not an annotation ftctl reads", location=loc, address=m.address, hint=hint)


def _hidden(m: Manifest) -> Iterator[Diagnostic]:
    hidden = hidden_characters(m.name)
    if hidden or not is_normalised(m.name):
        why = f"invisible characters {', '.join(hidden[:5])}" if hidden else "a form that is not NFC-normalised"
        yield make_diag("NM-007", f"name {m.name!r} has {why}", location=m.at("metadata", "name"), address=m.address)


def _lookalikes(ctx: RuleContext) -> Iterator[Diagnostic]:
    """Different names of one kind that read the same (NM-008), reported at each later one."""
    for kind, names in ctx.by_kind.items():
        seen: dict[str, str] = {}
        for name, group in names.items():
            first = seen.setdefault(skeleton(name), name)
            if first != name:
                yield make_diag("NM-008", f"{kind} name {name!r} looks like {first!r}", location=group[0].at("metadata", "name"),
                                address=group[0].address)


def _hub_ids_twice(ctx: RuleContext) -> Iterator[Diagnostic]:
    """The Studio refuses a second row for a Hub model or dataset it already has (NM-004)."""
    seen: dict[tuple[str, str], str] = {}
    for m in ctx.manifests:
        res = m.resource
        if isinstance(res, Model) and res.spec.type == "huggingface" and res.spec.huggingface_model_name:
            key, field = ("Model", res.spec.huggingface_model_name.strip()), "huggingface_model_name"
        elif isinstance(res, Dataset) and res.spec.type == "huggingface" and res.spec.huggingface_name:
            key, field = ("Dataset", res.spec.huggingface_name.strip()), "huggingface_name"
        else:
            continue
        if key in seen:
            yield make_diag("NM-004", f"{field} {key[1]!r} is also registered by {key[0]}/{seen[key]}",
                            location=m.at("spec", field), address=m.address)
        else:
            seen[key] = m.name


def _adapter_name_clashes(ctx: RuleContext) -> Iterator[Diagnostic]:
    adapters = ctx.by_kind.get("Adapter", {})
    for adapter_name, jobs in ctx.produced.items():
        for job in jobs:
            assert isinstance(job.resource, FineTuningJob)
            path = job.resource.adapter_name_path
            if adapter_name in adapters and not all(_trained_by(a, job) for a in adapters[adapter_name]):
                yield make_diag(
                    "NM-002",
                    f"adapter_name {adapter_name!r} is also the name of an Adapter",
                    location=job.at(*path),
                    address=job.address,
                )
            if job is not jobs[0]:
                yield make_diag(
                    "NM-002",
                    f"adapter_name {adapter_name!r} is also trained by FineTuningJob/{jobs[0].name}",
                    location=job.at(*path),
                    address=job.address,
                )


def _trained_by(adapter: Manifest, job: Manifest) -> bool:
    """Whether an Adapter is the one `job` registered (its `fine_tuning_job` names that job, or its
    row): the adapter belongs to its job, as the Studio's training script registers it (the job's
    `adapter_name` as the adapter's name), so the pair is not a clash."""
    ref = getattr(adapter.resource.spec, "fine_tuning_job", None)
    if isinstance(ref, IdRef):
        return ref.id == job.resource.metadata.annotations.get(STORE_ID_ANNOTATION)
    return ref == job.name
