"""`ftctl status` output: each object's sync and health, then its jobs, as tables fitted to a width
(100 columns when the terminal's is unknown, as when piped), then each evaluation's base vs adapter;
or JSON for machines (jobs' metrics and the comparisons as numbers).

Pure: the status rows, jobs and comparisons in, text out (the CLI passes the width and paints the text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from reconciler.plan import Comparison
from reconciler.views.evaluations import as_json, evaluations_text
from reconciler.views.inspection import WIDTH, table
from reconciler.views.printable import printable

FORMATS = ("table", "json")


def render_status(fmt: str, rows: Sequence[Any], jobs: Sequence[Any], *, evaluations: Sequence[Comparison] = (),
                  width: int = WIDTH) -> str:
    if fmt == "json":
        return json.dumps({"objects": [_object_json(r) for r in rows], "jobs": [asdict(j) for j in jobs],
                           "evaluations": as_json(evaluations)}, indent=1) + "\n"
    text = table(("KIND", "NAME", "SYNC", "HEALTH", "GEN", "STORE ID", "JOB"),
                 [(r.kind, r.name, r.sync.value, r.health.value, str(r.generation or "-"), r.store_id or "-", _jobs_text(r))
                  for r in rows], width=width, keep=2)
    if jobs:
        text += "\n" + table(("JOB", "BACKEND", "STATE", "ID", "LINK"),
                             [(j.job, j.backend, j.state_text, j.external_id or "-", j.links.get("run") or j.links.get("job") or "")
                              for j in jobs], width=width)
    if evaluations:
        text += "\n" + evaluations_text(evaluations, width=width)
    return printable(text)


def _jobs_text(row: Any) -> str:
    """An object's jobs in words, each distinct observation once."""
    return "; ".join(dict.fromkeys(j.summary for j in row.jobs))


def _object_json(row: Any) -> dict[str, Any]:
    """An object's status; its jobs in words under `job` (the `jobs` list beside the objects has each job's state)."""
    data = asdict(replace(row, jobs=()))
    del data["jobs"]
    return {**data, "job": _jobs_text(row)}
