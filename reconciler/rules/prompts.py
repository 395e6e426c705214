"""Prompt rules: the Studio's required templates (PR-002…PR-005) and ftctl's placeholder checks
(PR-101: every placeholder is a column of the prompt's dataset; PR-102: valid format strings whose
placeholders are plain `{column}` fields: no attribute, index, conversion or format-spec part, which
str.format would evaluate against the row at run time)."""

from __future__ import annotations

import string
from collections.abc import Iterator

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.manifests.loader import Manifest
from reconciler.models import Dataset, Prompt
from reconciler.rules.context import RuleContext, Target

TEMPLATE_FIELDS = ("prompt_template", "input_template", "completion_template")
REQUIRED_CODE = {"input_template": "PR-004", "completion_template": "PR-005"}


def check_prompts(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.of_kind("Prompt"):
        assert isinstance(m.resource, Prompt)
        spec, addr = m.resource.spec, m.address
        target = None
        if spec.dataset is None:
            yield make_diag("PR-002", "prompt dataset is required", location=m.at("spec", "dataset"), address=addr)
        else:
            target, diags = ctx.check_ref(m, spec.dataset, "Dataset", ("spec", "dataset"))
            yield from diags
        if not (spec.prompt_template or "").strip():
            yield make_diag("PR-003", location=m.at("spec", "prompt_template"), address=addr)
        for name, code in REQUIRED_CODE.items():
            if getattr(spec, name) is None:
                yield make_diag(code, location=m.at("spec", name), address=addr)
        columns = dataset_columns(ctx, target)
        for name in TEMPLATE_FIELDS:
            template = getattr(spec, name)
            if template:
                yield from _check_template(m, name, template, columns)


def dataset_columns(ctx: RuleContext, target: Target | None) -> list[str] | None:
    """The dataset's columns when they are known offline: a local file, declared features, the store."""
    if target is None:
        return None
    if target.live is not None:
        return target.live.feature_list()
    if target.manifest is None:
        return None
    resource = target.manifest.resource
    assert isinstance(resource, Dataset)
    spec = resource.spec
    if spec.location and spec.type in ("project_csv", "project_json", "project_jsonl"):
        table = ctx.facts.tables.get(target.manifest.path(spec.location))
        if table is not None and not table.error:
            return list(table.columns)
    return list(spec.features) if spec.features is not None else None


def placeholders(template: str) -> list[str]:
    """The column names a format string uses; raises ValueError for an invalid one."""
    names = []
    for _, field_name, format_spec, conversion in string.Formatter().parse(template):
        if field_name is None:
            continue
        if not field_name or field_name.isdigit():
            raise ValueError(f"positional placeholder {{{field_name}}}: placeholders must name a column")
        if "." in field_name or "[" in field_name or conversion is not None or format_spec:
            shown = field_name + (f"!{conversion}" if conversion is not None else "") + (f":{format_spec}" if format_spec else "")
            raise ValueError(f"placeholder {{{shown[:60]}}} is not a plain column name: attribute (.), index ([]), "
                             "conversion (!) and format-spec (:) parts are not allowed")
        names.append(field_name)
    return names


def _check_template(m: Manifest, name: str, template: str, columns: list[str] | None) -> Iterator[Diagnostic]:
    loc = m.at("spec", name)
    try:
        used = placeholders(template)
    except ValueError as exc:
        yield make_diag("PR-102", f"{name}: {exc}", location=loc, address=m.address)
        return
    if columns is None:
        return
    for column in dict.fromkeys(used):
        if column not in columns:
            yield make_diag(
                "PR-101",
                f"{name}: placeholder {{{column}}} is not a column of the dataset",
                location=loc,
                address=m.address,
                detail="dataset columns: " + ", ".join(columns),
            )
