"""Rendering validation results: text for people, JSON, GitHub workflow annotations, SARIF 2.1.0.

Every format is deterministic (no clock, no absolute paths) so golden files can pin it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from reconciler import __version__
from reconciler.catalog import RULES
from reconciler.diagnostics import Diagnostic, Severity
from reconciler.views.printable import printable

JSON_FORMAT_VERSION = 1


def summary_line(diags: Sequence[Diagnostic], files: int, manifests: int) -> str:
    errors = sum(1 for d in diags if d.severity is Severity.ERROR)
    warnings = sum(1 for d in diags if d.severity is Severity.WARNING)
    verdict = "invalid" if errors else "valid"
    return (
        f"{verdict}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        f" in {manifests} manifest{'s' * (manifests != 1)} from {files} file{'s' * (files != 1)}"
    )


def render_text(diags: Sequence[Diagnostic], files: int, manifests: int) -> str:
    lines = []
    for d in diags:
        where = str(d.location) if d.location else "ftctl"
        suffix = f" ({d.address})" if d.address else ""
        lines.append(f"{where}: {d.code} {d.severity.value}: {d.summary}{suffix}")
        if d.detail:
            lines.append(f"    {d.detail}")
        if d.hint:
            lines.append(f"    hint: {d.hint}")
    lines.append(summary_line(diags, files, manifests))
    return "\n".join(lines) + "\n"


def _diag_dict(d: Diagnostic) -> dict[str, object]:
    loc = d.location
    return {
        "code": d.code,
        "severity": d.severity.value,
        "summary": d.summary,
        "address": d.address,
        "file": loc.file if loc else None,
        "line": loc.line if loc else None,
        "col": loc.col if loc else None,
        "field": d.field or None,
        "hint": d.hint,
        "detail": d.detail,
    }


def render_json(diags: Sequence[Diagnostic], files: int, manifests: int) -> str:
    doc = {
        "format_version": JSON_FORMAT_VERSION,
        "valid": not any(d.severity is Severity.ERROR for d in diags),
        "summary": {
            "files": files,
            "manifests": manifests,
            "errors": sum(1 for d in diags if d.severity is Severity.ERROR),
            "warnings": sum(1 for d in diags if d.severity is Severity.WARNING),
            "infos": sum(1 for d in diags if d.severity is Severity.INFO),
        },
        "diagnostics": [_diag_dict(d) for d in diags],
    }
    return json.dumps(doc, indent=2) + "\n"


_GH_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _gh_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def render_github(diags: Sequence[Diagnostic], files: int, manifests: int) -> str:
    """GitHub Actions workflow commands: one annotation per diagnostic, on the line it concerns."""
    lines = []
    for d in diags:
        props = []
        if d.location:
            props.append(f"file={_gh_escape(d.location.file, prop=True)}")
            if d.location.line:
                props += [f"line={d.location.line}", f"col={d.location.col}"]
        props.append(f"title={_gh_escape(d.code + ' ' + RULES[d.code].title, prop=True)}")
        message = d.summary + (f" ({d.address})" if d.address else "") + (f"\n{d.hint}" if d.hint else "")
        lines.append(f"::{_GH_LEVEL[d.severity]} {','.join(props)}::{_gh_escape(message)}")
    lines.append(summary_line(diags, files, manifests))
    return "\n".join(lines) + "\n"


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def render_sarif(diags: Sequence[Diagnostic], files: int, manifests: int) -> str:
    """SARIF 2.1.0, for code scanning: every catalogued rule, one result per diagnostic."""
    rules = sorted(RULES.values(), key=lambda r: r.code)
    index = {r.code: i for i, r in enumerate(rules)}
    results = []
    for d in diags:
        result: dict[str, object] = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": _SARIF_LEVEL[d.severity],
            "message": {"text": d.summary + (f" ({d.address})" if d.address else "")},
        }
        if d.location:
            physical: dict[str, object] = {"artifactLocation": {"uri": d.location.file.replace("\\", "/"), "uriBaseId": "%SRCROOT%"}}
            if d.location.line:
                physical["region"] = {"startLine": d.location.line, "startColumn": d.location.col}
            result["locations"] = [{"physicalLocation": physical}]
        results.append(result)
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ftctl",
                        "version": __version__,
                        "informationUri": "https://github.com/cloudera/CML_AMP_LLM_Fine_Tuning_Studio",
                        "rules": [
                            {
                                "id": r.code,
                                "name": r.code.replace("-", ""),
                                "shortDescription": {"text": r.title},
                                "help": {"text": r.hint},
                                "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
                                "properties": {"studio_rule": r.studio},
                            }
                            for r in rules
                        ],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2) + "\n"


Renderer = Callable[[Sequence[Diagnostic], int, int], str]
FORMATS: dict[str, Renderer] = {
    "text": render_text,
    "json": render_json,
    "github": render_github,
    "sarif": render_sarif,
}


def render_diagnostics(fmt: str, diags: Sequence[Diagnostic], *, files: int, manifests: int) -> str:
    out = FORMATS[fmt](diags, files, manifests)
    return printable(out) if fmt in ("text", "github") else out
