"""`ftctl history Kind/name` output: one line per generation (when, ran or reused, commit, job
states, measured runtime, estimated device-hours and cost, metrics) fitted to a width, then each
generation's inputs (digests) and jobs; or JSON for machines (every digest whole, times as ISO 8601
beside the epoch seconds).

Pure: an `ObjectHistory` in, text out (the CLI passes the width and paints the text).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from reconciler.generations import Generation, ObjectHistory
from reconciler.views.inspection import WIDTH, table
from reconciler.views.plan import money
from reconciler.views.printable import printable

FORMATS = ("table", "json")
SHORT = 12  # characters of a digest or commit shown in the table


def render_history(fmt: str, history: ObjectHistory, *, width: int = WIDTH) -> str:
    if fmt == "json":
        return json.dumps(history_document(history), indent=1) + "\n"
    return printable(_text(history, width=width))


def history_document(history: ObjectHistory) -> dict[str, Any]:
    return {"apiVersion": "ftctl/v1", "kind": "History", "object": history.address, "managed": history.managed,
            "generations": [_generation_document(g) for g in history.generations],
            "totals": {"device_hours": history.device_hours, "cost": history.cost, "currency": history.currency}}


def _generation_document(g: Generation) -> dict[str, Any]:
    return {**asdict(g), "at": _iso(g.at), "at_ts": g.at, "launched": g.launched, "reused_generations": list(g.reused_generations),
            "runtime_s": g.runtime_s, "device_hours": g.device_hours, "cost": g.cost,
            "jobs": [{**asdict(j), "launched": j.launched} for j in g.jobs]}


def _text(history: ObjectHistory, *, width: int) -> str:
    if not history.generations:
        return (f"{history.address}: no generations recorded (ftctl records each job it launches in ftctl_lineage; this "
                "object's jobs ran before it did, or in the Studio before `ftctl import`)\n")
    count = len(history.generations)
    head = textwrap.fill(f"{history.address}: {count} generation{'s' if count != 1 else ''}"
                         f"{'' if history.managed else ' (no longer managed)'}, estimated {_hours(history.device_hours)} "
                         f"device-hours, {money(history.cost, history.currency)} in all", width=width,
                         subsequent_indent="  ") + "\n\n"
    body = [[f"{g.generation}{'*' if g.current else ''}", _when(g.at), _ran(g), _commit(g.commit), _states(g),
             _runtime(g.runtime_s) if g.launched else "-", _estimate(g),
             money(g.cost, str(g.estimate.get("currency") or history.currency)) if g.launched and g.estimate else "-",
             _metrics(g)] for g in history.generations]
    text = head + table(["GEN", "WHEN (UTC)", "RAN", "COMMIT", "STATE", "TOOK", "EST. HOURS", "EST. COST", "METRICS"], body,
                        width=width, keep=1, whole=3)
    text += "\n* the current generation\n\nInputs:\n"
    for g in history.generations:
        text += "\n".join(_inputs(g, width=width)) + "\n"
    return text


def _ran(g: Generation) -> str:
    reused = "reused " + ", ".join(f"g{n}" for n in g.reused_generations if n) if any(g.reused_generations) else "reused"
    if g.launched:
        return f"launched + {reused}" if g.reused_generations else "launched"
    return reused


def _commit(commit: str) -> str:
    """A commit as git abbreviates it (7 characters), `-dirty` kept."""
    sha, dirty = (commit[: -len("-dirty")], "-dirty") if commit.endswith("-dirty") else (commit, "")
    return f"{sha[:7]}{dirty}" if sha else "-"


def _states(g: Generation) -> str:
    return "/".join(dict.fromkeys(j.state for j in g.jobs)) or "-"


def _estimate(g: Generation) -> str:
    if not g.launched:
        return "0"
    if not g.estimate:
        return "-"
    if not g.estimate.get("known", True):
        return "unknown"
    unit = "CPU-h" if g.estimate.get("device") == "cpu" else "GPU-h"
    return f"{_hours(g.device_hours)} {unit}"


def _metrics(g: Generation) -> str:
    """Each metric of its jobs, the values of several jobs (an evaluation's rows) joined by '/'."""
    names = list(dict.fromkeys(k for j in g.jobs for k in sorted(j.metrics)))
    return ", ".join(f"{n} " + "/".join(f"{j.metrics[n]:.3g}" for j in g.jobs if n in j.metrics) for n in names) or "-"


def _inputs(g: Generation, *, width: int) -> list[str]:
    configs = ", ".join(f"{k} {v[:SHORT]}" for k, v in sorted(g.config_digests.items())) or "-"
    reused = "" if g.launched else f" (those of the run it reused, generation {', '.join(map(str, g.reused_generations))})"
    lines = [*_wrapped(f"generation {g.generation}: commit {g.commit}{reused}, ftctl {g.ftctl_version or '-'}, {_when(g.at)} UTC",
                       width=width, indent=2),
             *_wrapped(f"dataset {g.dataset_digest[:SHORT] if g.dataset_digest else '-'}, base {g.base_revision[:SHORT + 6]}",
                       width=width),
             *_wrapped(f"configs {configs}", width=width), *_wrapped(f"metrics {_metrics(g)}", width=width)]
    for j in g.jobs:
        lines.append(f"    job {j.job_name}")
        lines += _wrapped(f"{j.job_kind}{', ' + _row(j.row) if j.row else ''}, input {j.input_digest[:SHORT] or '-'}, "
                          f"reuse key {j.reuse_key[:SHORT] or '-'}{', ran ' + _runtime(j.runtime_s) if j.launched and j.runtime_s else ''}"
                          f"{'' if j.launched else ', reused from generation ' + str(j.reused_generation)}", width=width, indent=6)
    if g.estimate and g.launched:
        lines += _wrapped(f"estimate: {g.estimate.get('basis') or '-'}", width=width)
    return lines


def _row(row: str) -> str:
    table_name, _, row_id = row.partition("/")
    return f"{table_name}/{row_id[:8]}"


def _wrapped(text: str, *, width: int, indent: int = 4) -> list[str]:
    return textwrap.wrap(text, width=max(40, width), initial_indent=" " * indent, subsequent_indent=" " * (indent + 2),
                         break_on_hyphens=False) or [" " * indent]


def _iso(at: float) -> str | None:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds") if at else None


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M") if at else "-"


def _runtime(seconds: float) -> str:
    if not seconds:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def _hours(hours: float) -> str:
    return f"{hours:.3g}" if hours else "0"


