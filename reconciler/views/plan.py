"""Rendering a `Plan` for people and machines: text (terminal), json (the plan file), markdown (PR).

Pure: a plan in, a string out. The markdown view fits a pull-request comment: the summary counts
first, blockers next, base vs adapter of the evaluations with results, every change folded under
<details>, and the whole kept under a size budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from reconciler.plan import (
    Action,
    Blocker,
    Change,
    Consequence,
    CostEstimate,
    JobEstimate,
    Launch,
    Plan,
    Reuse,
)
from reconciler.scaleout import topology
from reconciler.views.choices import choice_text
from reconciler.views.evaluations import by_pair, change_text
from reconciler.views.printable import printable
from reconciler.waitchain import Step

SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-", Action.NOOP: " "}
# What each consequence code means, in the words the plan shows (the codes are the plan file's).
CONSEQUENCE_WORDS = {
    Consequence.NONE: "",
    Consequence.IN_PLACE: "in place",
    Consequence.RERUN: "re-run the job",
    Consequence.NEW_ADAPTER_VERSION: "new adapter version",
    Consequence.REEXPORT: "re-export",
    Consequence.SHARED: "reuse an equal config row",
    Consequence.RELEASE: "stop managing a shared row",
    Consequence.WAIT: "waits for its dependencies",
    Consequence.LAUNCH: "launch the job",
    Consequence.RETRY: "relaunch after a transient failure",
    Consequence.REGISTER: "register what the job produced",
    Consequence.GATED: "held by its gate",
    Consequence.REUSE: "reuse an earlier run: nothing launched",
}
MARKDOWN_BUDGET = 60_000  # GitHub caps a comment at 65,536 characters
VALUE_WIDTH = 100
LISTED = 20


def render_plan(fmt: str, plan: Plan) -> str:
    if fmt == "json":
        return plan.to_json()
    if fmt == "markdown":
        return printable(markdown(plan))
    return printable(text(plan))


def store_label(store: str) -> str:
    """The store as people name it: a path for SQLite, the URL otherwise."""
    return store.split(":///", 1)[1] if store.startswith("sqlite") and ":///" in store else store


def new_store_line(plan: Plan) -> str:
    """The warning of a plan whose store is not there (a new project, or a mistyped --store)."""
    return f"A new store will be created at {store_label(plan.store)}: apply needs --create-store (or a yes on a terminal)."


def partial_line(plan: Plan) -> str:
    """The header of a partial plan: what selected it, and that nothing else is touched ("" when whole)."""
    if plan.partial is None:
        return ""
    closure = " and what they reference" if plan.partial.targets or plan.partial.selectors else ""
    return f"Partial plan: only {plan.partial.describe()}{closure}; objects outside it are neither changed nor deleted."


def counts(plan: Plan) -> dict[str, int]:
    """Changes by action, with changes that wait for a job's output counted apart."""
    out = {a.value: 0 for a in Action} | {"waiting": 0}
    for change in plan.changes:
        out["waiting" if change.waits_for else change.action.value] += 1
    return out


def summary_line(plan: Plan) -> str:
    n = counts(plan)
    parts = [f"{n['create']} to create", f"{n['update']} to update", f"{n['replace']} to replace",
             f"{n['delete']} to delete", f"{n['noop']} unchanged"]
    if n["waiting"]:
        parts.append(f"{n['waiting']} waiting")
    return ", ".join(parts)


def _orphans(plan: Plan) -> list[Change]:
    return [c for c in plan.changes if c.orphan]


def text(plan: Plan) -> str:
    lines = [f"Plan for {store_label(plan.store)} (serial {plan.serial}): {summary_line(plan)}."]
    lines += [partial_line(plan)] if plan.partial else []
    if not plan.store_exists:
        lines.append(new_store_line(plan))
    shown = plan.actionable()
    if shown:
        lines.append("")
    for change in shown:
        lines.extend(_text_change(change, plan.labels))
    jobs = [c for c in plan.changes if c.jobs and not c.launches and c not in shown]
    if jobs:
        lines += ["", "Jobs:"]
        lines += [f"  {c.address}: {c.job_summary}" for c in jobs]
    waiting = [c for c in plan.changes if c.waits_for]
    if waiting:
        lines += ["", "Waiting (planned once what they need exists):"]
        lines += [f"  {c.address}: {c.reason}" + (f"; {choice_text(c.chosen)}" if c.chosen else "") for c in waiting]
    orphans = _orphans(plan)
    if orphans:
        lines += ["", f"Not in the manifests ({len(orphans)}; kept, `--prune` would delete them):"]
        lines += [f"  {c.address}" for c in orphans[:LISTED]] + ([f"  … and {len(orphans) - LISTED} more"] if len(orphans) > LISTED else [])
    if plan.estimate is not None:
        lines += ["", *estimate_lines(plan.estimate)]
    if plan.blockers:
        lines += ["", "Blocked: this plan will not be applied:"]
        lines += [f"  {blocker_text(b)}" for b in plan.blockers]
    if not plan.has_changes() and not plan.blockers:
        lines += ["", _no_changes(plan)]
    return "\n".join(lines) + "\n"


def reuse_text(reuse: Reuse) -> str:
    """`reuses adapter X, trained <when> from commit <sha>, 0 GPU-hours` (an evaluation: its results)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(reuse.at)) if reuse.at else "at an unknown time"
    what = f"adapter {reuse.product_name}, trained" if reuse.product_name else f"the results of job {reuse.job_name}, run"
    return f"reuses {what} {when} from commit {reuse.commit or 'unknown'} (generation {reuse.generation}), 0 GPU-hours"


def blocker_text(blocker: Blocker) -> str:
    """`file:line: CODE address: message (policy key K)`: where to fix it first, as diagnostics read."""
    where = f"{blocker.where}: " if blocker.where else ""
    key = f" (policy key {blocker.policy_key}; apply --override-policy {blocker.policy_key} --reason TEXT waives it)" \
        if blocker.policy_key else ""
    return f"{where}{blocker.code} {blocker.address}: {blocker.message}{key}"


def hours(value: float) -> str:
    return f"{value:.3g}"


def money(value: float, currency: str) -> str:
    """Cents, or (under a cent, as the tiny demo's jobs) three significant digits."""
    return f"{value:,.2f} {currency}" if value >= 0.01 or value == 0 else f"{value:.3g} {currency}"


def _job_figures(job: JobEstimate, currency: str) -> str:
    if not job.known:
        return "unknown"
    unit = "GPU-hours" if job.on_gpu else "CPU-hours"
    return (f"{job.tokens:,} tokens, {hours(job.hours)} h on {job.devices} {job.device}, "
            f"{hours(job.device_hours)} {unit}, {money(job.cost, currency)}")


def total_text(estimate: CostEstimate) -> str:
    unknown = len(estimate.unknown())
    more = f" ({unknown} job{'s' if unknown != 1 else ''} not estimated)" if unknown else ""
    return (f"{hours(estimate.gpu_hours)} GPU-hours, {hours(estimate.cpu_hours)} CPU-hours, "
            f"{money(estimate.cost, estimate.currency)}{more}")


def estimate_lines(estimate: CostEstimate) -> list[str]:
    """The jobs' estimates, each with its basis, and the total (`reconciler.estimates`)."""
    lines = ["Estimated cost of the jobs it launches (now, and later once what they wait for exists):"]
    for job in estimate.jobs:
        when = " (later)" if job.later else ""
        lines += [f"  {job.address}{when}: {_job_figures(job, estimate.currency)}", f"      basis: {job.basis}"]
    lines.append(f"  Total: {total_text(estimate)}")
    return lines


def _md_estimate(estimate: CostEstimate | None) -> list[str]:
    if estimate is None:
        return []
    rows = [f"| {_md(j.address)}{' (later)' if j.later else ''} | {j.device} x{j.devices} | "
            + (f"{j.tokens:,} | {hours(j.device_hours)} | {money(j.cost, estimate.currency)} |" if j.known else "? | ? | ? |")
            for j in estimate.jobs]
    return [f"**Estimated cost**: {_md(total_text(estimate))}", "",
            "| job | device | tokens | device-hours | cost |", "|---|---|---:|---:|---:|", *rows, "",
            "<details><summary>basis</summary>", "", *(f"- {_md(j.address)}: {_md(j.basis)}" for j in estimate.jobs),
            "", "</details>", ""]


def _no_changes(plan: Plan) -> str:
    kept = len(_orphans(plan))
    if kept:
        return f"No changes to apply. {kept} managed object(s) without manifests are kept as they are."
    return "No changes. The store matches the manifests."


def _text_change(change: Change, labels: dict[str, str]) -> list[str]:
    head = f"  {SYMBOL[change.action]} {change.address}: {change.reason}"
    if CONSEQUENCE_WORDS[change.consequence]:
        head += f" [{CONSEQUENCE_WORDS[change.consequence]}]"
    if change.drift:
        head += " (drift)"
    out = [head]
    for diff in change.fields:
        before, after = diff.shown()
        mark = "  # forces replacement" if diff.forces_replace and change.action is Action.REPLACE else ""
        if change.action is Action.CREATE:
            out.append(f"      {diff.path} = {_value(after, labels)}")
        elif change.action is Action.DELETE:
            out.append(f"      {diff.path} = {_value(before, labels)}")
        else:
            out.append(f"      {diff.path}: {_value(before, labels)} -> {_value(after, labels)}{mark}")
    out += [f"      => launches job {launch.job_name} (attempt {launch.attempt}){_world(launch, ' on ')}" for launch in change.launches]
    out += [f"      => {reuse_text(reuse)}" for reuse in change.reuses]
    out += [f"      {choice_text(change.chosen)}"] if change.chosen else []
    return out


def _value(value: Any, labels: dict[str, str] | None = None) -> str:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    if len(shown) > VALUE_WIDTH:
        shown = shown[: VALUE_WIDTH - 1] + "…"
    label = (labels or {}).get(value) if isinstance(value, str) else None
    return f"{shown} ({label})" if label else shown


def markdown(plan: Plan, *, budget: int = MARKDOWN_BUDGET) -> str:
    n = counts(plan)
    head = [f"### ftctl plan for `{store_label(plan.store)}`", "",
            "| create | update | replace | delete | unchanged | waiting |", "|---:|---:|---:|---:|---:|---:|",
            f"| {n['create']} | {n['update']} | {n['replace']} | {n['delete']} | {n['noop']} | {n['waiting']} |", ""]
    head += [f"**{_md(partial_line(plan))}**", ""] if plan.partial else []
    if not plan.store_exists:
        head += [f"**{_md(new_store_line(plan))}**", ""]
    if plan.blockers:
        head += ["**Blocked** (exit 3): this plan will not be applied.", ""]
        head += [f"- {f'`{_md(b.where)}` ' if b.where else ''}`{b.code}` **{_md(b.address)}**: {_md(b.message)}"
                 + (f" (policy key `{b.policy_key}`)" if b.policy_key else "") for b in plan.blockers] + [""]
    if not plan.has_changes():
        head += [_no_changes(plan), ""]
    head += _md_estimate(plan.estimate)
    head += _md_evaluations(plan)
    changes = plan.actionable()
    body: list[str] = []
    if changes:
        body += [f"<details><summary>{len(changes)} change(s)</summary>", ""]
        for change in changes:
            body += _md_change(change, plan.labels)
        body += ["", "</details>", ""]
    waiting = [c for c in plan.changes if c.waits_for]
    orphans = _orphans(plan)
    if waiting:
        body += [f"<details><summary>{len(waiting)} waiting</summary>", ""]
        body += [f"- **{_md(c.address)}**: {_md(c.reason)}" + (f"; {_md(choice_text(c.chosen))}" if c.chosen else "")
                 for c in waiting] + ["", "</details>", ""]
    if orphans:
        body += [f"<details><summary>{len(orphans)} kept without manifests (<code>--prune</code> would delete them)</summary>", ""]
        body += [f"- {_md(c.address)}" for c in orphans] + ["", "</details>", ""]
    footer = [f"<sub>store serial {plan.serial} · plan digest `{plan.digest()}`</sub>", ""]
    note = f"_…the plan is longer than a comment allows ({len(changes)} changes in all): see the job's plan artifact._"
    return fit_comment(head, body, footer, budget=budget, note=note)


def fit_comment(head: list[str], body: list[str], footer: list[str], *, budget: int, note: str) -> str:
    """A markdown comment of head, body and footer lines; over the budget, the body is cut (closing
    its open <details>) and `note` says so. Head and footer are always kept."""
    out = "\n".join(head + body + footer)
    if len(out) <= budget:
        return out
    kept: list[str] = []
    size = len("\n".join(head + footer)) + 200
    for line in body:
        if size + len(line) + 1 > budget:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(head + kept + ["", "</details>", "", note, ""] + footer)


def _md_evaluations(plan: Plan) -> list[str]:
    """Base vs adapter of the planned evaluations the store has results for; nothing without."""
    if not plan.evaluations:
        return []
    bullets = [f"- **{_md(f'EvaluationJob/{evaluation}')}**: {_md(base)} → {_md(adapter)}: "
               + ", ".join(f"`{change_text(c)}`" for c in group) for (evaluation, base, adapter), group in by_pair(plan.evaluations)]
    return ["**Evaluations** (base → adapter, from the results in the store):", "", *bullets, ""]


def _md_change(change: Change, labels: dict[str, str]) -> list[str]:
    extra = f" — {CONSEQUENCE_WORDS[change.consequence]}" if CONSEQUENCE_WORDS[change.consequence] else ""
    drift = " (drift)" if change.drift else ""
    out = [f"- `{SYMBOL[change.action].strip() or '='}` **{_md(change.address)}**: {_md(change.reason)}{extra}{drift}"]
    out += [f"  - {_md(reuse_text(reuse))}" for reuse in change.reuses]
    for diff in change.fields[:30]:
        before, after = diff.shown()
        if change.action is Action.CREATE:
            out.append(f"  - `{diff.path}` = `{_code(_value(after, labels))}`")
        elif change.action is Action.DELETE:
            out.append(f"  - `{diff.path}` was `{_code(_value(before, labels))}`")
        else:
            out.append(f"  - `{diff.path}`: `{_code(_value(before, labels))}` → `{_code(_value(after, labels))}`")
    if len(change.fields) > 30:
        out.append(f"  - … {len(change.fields) - 30} more fields")
    out += [f"  - launches `{launch.job_name}` on {_md(_world(launch))}" for launch in change.launches if _world(launch)]
    out += [f"  - {_md(choice_text(change.chosen))}"] if change.chosen else []
    return out


def _world(launch: Launch, before: str = "") -> str:
    """The world a training launch asks for, when it is more than one process ('' otherwise):
    workers x processes per worker, and each worker's resources (`reconciler.scaleout`)."""
    world = topology(launch.input.get("resources")) if launch.kind == "train" else None
    return f"{before}{world.describe()}" if world is not None and world.is_distributed else ""


def _md(value: str) -> str:
    return value.replace("`", "'").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _code(value: str) -> str:
    """Text for inside a code span: HTML is shown literally there; only backticks and newlines matter."""
    return value.replace("`", "'").replace("\n", " ")


def job_lines(plan: Plan) -> list[tuple[str, str]]:
    """(address, what its job is doing) for every job the plan observed or will launch."""
    out = []
    for change in plan.changes:
        if change.launches:
            out.append((change.address, f"launching {', '.join(launch.job_name for launch in change.launches)}"))
        elif change.jobs:
            out.append((change.address, change.job_summary))
        elif change.waits_for and change.kind in ("FineTuningJob", "EvaluationJob", "ModelExport"):
            out.append((change.address, change.reason))
    return out


def chain_text(chain: Sequence[Step]) -> str:
    """The chain `apply --wait` may run, as shown before its first confirmation ("" when none
    besides this round's launches, which the plan shows)."""
    if not any(not step.is_now() for step in chain):
        return ""
    lines = ["", "With --wait, the whole chain it may run (asked for once, now):"]
    for step in chain:
        when = "running, followed until it ends" if step.running else step.when or "now"
        lines.append(f"  {step.address}: {step.run} — {when}")
    return printable("\n".join(lines) + "\n")
