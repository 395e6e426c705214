"""`ftctl get` and `ftctl describe` output: tables and kubectl-like sections for people, JSON and YAML
for machines.

Pure: items and describe documents in, text out; the clock (`now`, for ages) and the width are
passed in. Every secret is masked here, once, in the document all formats render from
(`secrets.redact`): a token a Studio row holds never reaches the screen or a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from reconciler.inspection import PRODUCED, Item
from reconciler.secrets import redact

FORMATS = ("table", "json", "yaml")
WIDTH = 100  # the width tables fit when the terminal's is unknown
ELLIPSIS = "…"
_METRIC_KINDS = ("FineTuningJob", "EvaluationJob")


def render_items(fmt: str, found: Sequence[Item], *, now: float, width: int = WIDTH) -> str:
    documents = [_item_document(item) for item in found]
    if fmt != "table":
        return _dump(fmt, {"apiVersion": "ftctl/v1", "kind": "List", "items": documents})
    if not documents:
        return "No objects found.\n"
    kinds = list(dict.fromkeys(d["kind"] for d in documents))
    tables = [_kind_table([d for d in documents if d["kind"] == kind], now=now, width=width, qualified=len(kinds) > 1)
              for kind in kinds]
    return "\n".join(tables)


def render_described(fmt: str, documents: Sequence[dict[str, Any]], *, now: float) -> str:
    shown = [redact(_stamped(d)) for d in documents]
    if fmt != "table":
        return _dump(fmt, shown[0] if len(shown) == 1 else {"apiVersion": "ftctl/v1", "kind": "List", "items": shown})
    return "\n".join(_described_text(d, now=now) for d in shown)


def _dump(fmt: str, document: Any) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))


def _item_document(item: Item) -> dict[str, Any]:
    return redact({"kind": item.kind, "name": item.name, "managed": item.managed, "sync": item.sync, "health": item.health,
                   "store_id": item.store_id, "generation": item.generation, "updated_at": _iso(item.updated_at),
                   "updated_ts": item.updated_at, "fields": item.fields, "metrics": item.metrics})


def _stamped(document: dict[str, Any]) -> dict[str, Any]:
    """Times as ISO 8601 (UTC) beside the epoch seconds stored."""
    events = [{**e, "at": _iso(e["at"]), "at_ts": e["at"]} for e in document["events"]]
    return {**document, "updated_at": _iso(document["updated_at"]), "updated_ts": document["updated_at"], "events": events}


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds") if at else None


def _age(at: float | None, now: float) -> str:
    if not at:
        return "-"
    seconds = max(0, int(now - at))
    for unit, size, limit in (("s", 1, 120), ("m", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def _kind_table(documents: list[dict[str, Any]], *, now: float, width: int, qualified: bool) -> str:
    fields = list(documents[0]["fields"])
    metrics = documents[0]["kind"] in _METRIC_KINDS
    header = ["NAME", "SYNC", "HEALTH", "ID", "GEN", "AGE", *fields, *(["METRICS"] if metrics else [])]
    body = [[f"{d['kind']}/{d['name']}" if qualified else d["name"], d["sync"], d["health"], (d["store_id"] or "-")[:8],
             str(d["generation"] or "-"), _age(d["updated_ts"], now), *(d["fields"][f] or "-" for f in fields),
             *([_metrics(d["metrics"])] if metrics else [])] for d in documents]
    return table(header, body, width=width)


def _metrics(by_job: dict[str, dict[str, float]]) -> str:
    """`rougeL 0.29/0.04`: each metric, its value in each job that reported it (jobs in name order)."""
    names = list(dict.fromkeys(k for _, values in sorted(by_job.items()) for k in values))
    parts = [f"{n} " + "/".join(f"{values[n]:.3g}" for _, values in sorted(by_job.items()) if n in values) for n in names]
    return ", ".join(parts) or "-"


def table(header: Sequence[str], body: Sequence[Sequence[str]], *, width: int, keep: int = 1, whole: int = 6) -> str:
    """Columns two spaces apart, fitted to `width`: cells are cut (ending in …) in the widest columns
    first, never below their header's width (nor, in the first `whole` columns, below 12: states and
    ids stay readable), and in the first `keep` columns (the names) last."""
    rows = [[" ".join(str(c).split()) for c in row] for row in [header, *body]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    floor = [max(len(h), min(w, 12) if i < whole else 6) for i, (h, w) in enumerate(zip(header, widths))]
    for columns in (range(keep, len(widths)), range(keep)):
        while sum(widths) + 2 * (len(widths) - 1) > width:
            widest = max(columns, key=lambda i: widths[i] - floor[i], default=None)
            if widest is None or widths[widest] <= floor[widest]:
                break
            widths[widest] -= 1
    lines = ["  ".join(_cut(cell, w).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def _described_text(d: dict[str, Any], *, now: float) -> str:
    lines = [f"Name:        {d['name']}", f"Kind:        {d['kind']}"]
    if d["managed"]:
        lines.append(f"Managed:     yes ({d['origin']}, generation {d['generation']}{', protected' if d['protected'] else ''}"
                     f"{', jobs run on ' + d['backend'] if d['backend'] else ''})")
    elif d["sync"] == PRODUCED:
        lines.append("Managed:     no (a managed job produced it: see Uses)")
    else:
        lines.append("Managed:     no (a Studio row ftctl does not manage: `ftctl import` adopts it)")
    compared = f" ({d['reason']})" if d["reason"] else (" (pass the manifests with -f to compare)" if d["sync"] == "-" else "")
    lines += [f"Sync:        {d['sync']}{compared}",
              f"Health:      {d['health']}", f"Store ID:    {d['store_id'] or '-'}",
              f"Updated:     {d['updated_at']} ({_age(d['updated_ts'], now)} ago)" if d["updated_ts"] else "Updated:     -"]
    lines += [f"{header.title() + ':':<13}{value or '-'}" for header, value in d["fields"].items()]
    lines += _manifest_section(d["manifest"])
    lines += _section("Rows", [f"{r['table']}/{r['id']}:" for r in d["rows"]], [_mapping(r["values"], "    ") for r in d["rows"]])
    lines += _jobs_section(d["jobs"])
    lines += _chain_section(d.get("chain") or [])
    lines += _section("Uses", d["uses"]) + _section("Used by", d["used_by"])
    lines += _events_section(d["events"])
    return "\n".join(lines) + "\n"


def _section(title: str, entries: list[str], bodies: list[list[str]] | None = None) -> list[str]:
    if not entries:
        return [f"{title}:{' ' * max(1, 12 - len(title))}<none>"]
    out = [f"{title}:"]
    for index, entry in enumerate(entries):
        out.append(f"  {entry}")
        out += bodies[index] if bodies else []
    return out


def _mapping(values: dict[str, Any], indent: str) -> list[str]:
    return [f"{indent}{key}: {'' if value is None else value}".rstrip() for key, value in values.items()]


def _manifest_section(manifest: dict[str, Any] | None) -> list[str]:
    if not manifest:
        return ["Manifest:    <not given: pass the manifests with -f to show it>"]
    text = yaml.safe_dump(manifest["spec"], sort_keys=False, allow_unicode=True, width=100).rstrip("\n")
    return [f"Manifest:    {manifest['source']}", *(f"  {line}" for line in text.splitlines())]


def _jobs_section(jobs: list[dict[str, Any]]) -> list[str]:
    if not jobs:
        return ["Jobs:        <none>"]
    out = ["Jobs:"]
    for job in jobs:
        out.append(f"  {job['job']}:")
        out += _mapping({"backend": job["backend"], "state": job["summary"], "attempt": job["attempt"] or "-",
                         "external id": job["external_id"] or "-"}, "    ")
        out += _mapping(job["links"], "    ")
        if job["metrics"]:
            out.append("    metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(job["metrics"].items())))
    return out


def _chain_section(chain: list[dict[str, Any]]) -> list[str]:
    """manifest -> rows -> jobs -> adapter -> evaluations -> registry: one link a line, its details after."""
    if not chain:
        return ["Chain:       <none>"]
    out = ["Chain:"]
    for link in chain:
        owner = f"  ({link['address']})" if link["address"] and link["stage"] != "manifest" else ""
        out.append(f"  {link['stage']:<11} {link['what']}{owner}")
        details = dict(link["details"])
        metrics = details.pop("metrics", None)
        configs = details.pop("config_digests", None)
        shown = [f"{k.replace('_', ' ')} {_short(v)}" for k, v in details.items()]
        shown += [f"metrics {', '.join(f'{k} {v:.4g}' for k, v in sorted(metrics.items()))}"] if metrics else []
        shown += [f"configs {', '.join(f'{k} {_short(v)}' for k, v in sorted(configs.items()))}"] if configs else []
        out += [f"{' ' * 14}{part}" for part in shown]
    return out


def _short(value: Any) -> str:
    """A digest cut to 12 characters (a `files:` revision keeps its prefix); other values as they are."""
    text = str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12]
    return text[:18] if text.startswith("files:") else text


def _events_section(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return ["Events:      <none>"]
    body = [[e["at"] or "-", e["action"], f"{e['table']}/{e['row_id'][:8]}", str(e["serial"]), e["actor"] or "-",
             (e["commit_sha"] or "-")[:12], ", ".join(e["changed"]) or "-"] for e in events]
    text = table(["AT", "ACTION", "ROW", "SERIAL", "BY", "COMMIT", "CHANGED"], body, width=WIDTH - 2, keep=3)
    return ["Events:", *(f"  {line}" for line in text.splitlines())]
