"""Rendering a `DriftReport` (`ftctl drift`): text (terminal), json (versioned), markdown (an issue or
pull-request comment).

Pure: a report in, a string out. Every format starts with the summary; the markdown folds the
details under <details> and keeps the whole under a comment's size budget. Values come from
`FieldDiff.shown()`, so a sensitive field shows as "(sensitive)", never its value.
"""

from __future__ import annotations

import json

from reconciler.drift import DriftedObject, DriftReport, DriftState
from reconciler.views.plan import MARKDOWN_BUDGET, _code, _md, _value, fit_comment, store_label
from reconciler.views.printable import printable

FIELDS_SHOWN = 10


def render_drift(fmt: str, report: DriftReport) -> str:
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return printable(markdown(report))
    return printable(text(report))


def summary_line(report: DriftReport) -> str:
    """`2 drifted, 1 missing; 3 rows ftctl does not manage`, or `no drift`."""
    counts = report.counts()
    objects = ", ".join(f"{counts[s.value]} {s.value}" for s in DriftState if counts[s.value])
    rows = f"{len(report.unmanaged)} row{'s' if len(report.unmanaged) != 1 else ''} ftctl does not manage" if report.unmanaged else ""
    return "; ".join(part for part in (objects, rows) if part) or "no drift"


def text(report: DriftReport) -> str:
    head = f"Drift in {store_label(report.store)} (serial {report.serial}): {summary_line(report)}."
    if not report.has_drift():
        return f"{head}\nThe store matches the manifests ({report.managed} objects) and ftctl manages every Studio row.\n"
    lines = [head]
    if report.objects:
        lines.append("")
        width = max(len(o.state.value) for o in report.objects)
        for obj in report.objects:
            lines.append(f"  {obj.state.value:<{width}}  {obj.address}: {obj.reason}")
            lines += [f"      {line}" for line in _detail_lines(obj, report, code=False)]
    if report.unmanaged:
        lines += ["", f"Rows ftctl does not manage ({len(report.unmanaged)}; `ftctl import` would adopt them):"]
        width = max(len(r.table) for r in report.unmanaged)
        lines += [f"  {r.table:<{width}}  {r.id}  {r.name}".rstrip() for r in report.unmanaged]
    return "\n".join(lines) + "\n"


def _detail_lines(obj: DriftedObject, report: DriftReport, *, code: bool) -> list[str]:
    """The field diffs of a changed row (not of a row to create or delete: the plan lists those), and the job."""
    out = []
    if obj.state in (DriftState.DRIFTED, DriftState.OUT_OF_SYNC) and any(f.before is not None for f in obj.fields):
        for diff in obj.fields[:FIELDS_SHOWN]:
            before, after = (_value(v, report.labels) for v in diff.shown())
            out.append(f"`{diff.path}`: `{_code(before)}` → `{_code(after)}`" if code else f"{diff.path}: {before} -> {after}")
        if len(obj.fields) > FIELDS_SHOWN:
            out.append(f"… {len(obj.fields) - FIELDS_SHOWN} more fields")
    if obj.job and obj.job != obj.reason:
        out.append(f"job: `{_code(obj.job)}`" if code else f"job: {obj.job}")
    return out


def markdown(report: DriftReport, *, budget: int = MARKDOWN_BUDGET) -> str:
    label = f"`{_code(store_label(report.store))}`"
    if not report.has_drift():
        return (f"### ftctl drift in {label}: no drift\n\nThe store matches the manifests ({report.managed} objects) "
                f"and ftctl manages every Studio row.\n\n<sub>store serial {report.serial}</sub>\n")
    counts = report.counts()
    head = [f"### ftctl drift in {label}: {_md(summary_line(report))}", "",
            "| " + " | ".join([*(s.value for s in DriftState), "unmanaged rows"]) + " |",
            "|" + "---:|" * (len(DriftState) + 1),
            "| " + " | ".join([*(str(counts[s.value]) for s in DriftState), str(counts["unmanaged"])]) + " |", ""]
    body: list[str] = []
    if report.objects:
        body += [f"<details><summary>{len(report.objects)} object(s) differ from their manifests</summary>", ""]
        for obj in report.objects:
            body.append(f"- **{obj.state.value}** `{_code(obj.address)}`: {_md(obj.reason)}")
            body += [f"  - {line}" for line in _detail_lines(obj, report, code=True)]
        body += ["", "</details>", ""]
    if report.unmanaged:
        body += [f"<details><summary>{len(report.unmanaged)} row(s) ftctl does not manage (<code>ftctl import</code> would adopt them)</summary>",
                 "", "| table | id | name |", "|---|---|---|"]
        body += [f"| {r.table} | `{_code(r.id)}` | {_md(r.name)} |" for r in report.unmanaged]
        body += ["", "</details>", ""]
    footer = [f"<sub>store serial {report.serial} · {report.managed} objects compared</sub>", ""]
    note = "_…the report is longer than a comment allows: run `ftctl drift --format json` for all of it._"
    return fit_comment(head, body, footer, budget=budget, note=note)
