"""Name rules: every object has a valid name, unique per kind; trained adapter names never clash.

Codes: AD-001 / PR-001 (the Studio's required-name rules), SC-003, NM-001, NM-002, NM-003, NM-004.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.models import Dataset, FineTuningJob, Model
from reconciler.rules.context import RuleContext

NAME_RE = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,254}[^\x00-\x1f\x7f\s])?$")
REQUIRED_NAME_CODE = {"Adapter": "AD-001", "Prompt": "PR-001"}


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
            if adapter_name in adapters:
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
