"""The `ftctl` command line: argument parsing and exit codes only (the only click user).

Imports nothing heavy at module level, so `ftctl --help` stays fast; each command imports the
engine when it runs. No traceback reaches a user: unexpected failures print one line (set
FTCTL_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import click

EXIT_OK, EXIT_ERRORS, EXIT_CHANGES, EXIT_BLOCKED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it (128 + SIGINT)


def _no_color(_ctx: Any, _param: Any, value: bool) -> None:
    if value:
        os.environ["NO_COLOR"] = "1"  # read where the screen is decided (views.terminal.screen_of), as a user's NO_COLOR is


FORMAT_NAMES = frozenset({"text", "json", "yaml", "yml", "markdown", "md", "table", "github", "sarif"})


def _output_file(_ctx: Any, param: Any, value: str | None) -> str | None:
    """-o/--output is always a file: a value that is a format's name is refused (a file named
    `yaml` is never what `plan -o yaml` meant); ./yaml writes such a file on purpose."""
    if value is not None and value.lower() in FORMAT_NAMES:
        raise click.BadParameter(f"{value!r} is a format's name, and -o writes a file: did you mean --format {value}? "
                                 f"(to write a file named {value}, give ./{value})", param=param)
    return value


def _output_option(help_text: str, *, required: bool = False, metavar: str = "FILE"):  # type: ignore[no-untyped-def]
    """-o/--output FILE, the same on every command that writes a report."""
    return click.option("-o", "--output", "output", required=required, metavar=metavar, callback=_output_file,
                        type=click.Path(dir_okay=False), help=help_text)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ftctl", prog_name="ftctl")
@click.option("--no-color", is_flag=True, expose_value=False, callback=_no_color, is_eager=True,
              help="No colour (as NO_COLOR=1 does). Colour is shown only on a terminal, or with FORCE_COLOR set.")
def cli() -> None:
    """Declarative, GitOps-style reconciler for Cloudera's Fine Tuning Studio.

    Manifests (YAML, apiVersion ftctl/v1) declare datasets, models, adapters, prompts, configs,
    fine-tuning jobs, evaluation jobs and model exports. `ftctl validate` checks them against
    every rule of the Studio and more; `ftctl plan` shows what would change in the Studio's store;
    `ftctl apply` makes the store match and runs the training, evaluation and export jobs
    (locally, or as CML jobs with --backend cml; `ftctl status`, `logs` and `cancel` follow them).

    The store is a SQLite file: --store PATH|URL, else FINE_TUNING_STUDIO_SQLITE_DB (both relative to
    the current folder), else .app/state.db in the project root: the nearest folder above the
    manifests (or the current folder) holding ftctl.toml, else .git.
    """


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("-f", "--file", "files", multiple=True, type=click.Path(), help="A manifest file or folder (repeatable).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "github", "sarif"]),
    default="text",
    show_default=True,
    help="text for people; json (versioned); github workflow annotations; sarif 2.1.0.",
)
@click.option("--offline", is_flag=True, help="Skip checks that need the network (Hub names); say so.")
@click.option("--store", metavar="PATH|URL", help="Also resolve references against this Studio store.")
@_output_option("Write the report to this file instead of the screen.")
@click.option(
    "--no-cache",
    is_flag=True,
    envvar="FTCTL_NO_CACHE",
    help="Parse every file again (the parse cache lives in $FTCTL_CACHE_DIR or ~/.cache/ftctl).",
)
def validate(
    paths: tuple[str, ...], files: tuple[str, ...], fmt: str, offline: bool, store: str | None, output: str | None, no_cache: bool
) -> None:
    """Check manifests: schema, references, and every rule of the Studio's rule catalog.

    PATHS are files or folders (folders are searched for *.yaml and *.yml); default: the current
    folder. Exit status: 0 when there are no errors, 1 when there are.
    """
    from reconciler.engine import validate as run_validate
    from reconciler.views import render_diagnostics

    report = run_validate(list(paths + files) or ["."], offline=offline, store=store, use_cache=not no_cache)
    text = render_diagnostics(fmt, report.diagnostics, files=len(report.files), manifests=report.documents)
    _show(text, fmt, output)
    sys.exit(EXIT_ERRORS if report.has_errors() else EXIT_OK)


def _set_backend(_ctx: Any, _param: Any, value: str | None) -> None:
    if value:
        os.environ["FTCTL_BACKEND"] = value  # read with the other settings (engine.effective_environ)


def _manifest_args(f):  # type: ignore[no-untyped-def]
    """The options plan and apply share: what to read and under which policy."""
    for decorator in reversed([
        click.argument("paths", nargs=-1, type=click.Path()),
        click.option("-f", "--file", "files", multiple=True, type=click.Path(), help="A manifest file or folder (repeatable)."),
        click.option("--store", metavar="PATH|URL", help="The Studio store, a SQLite file (default: $FINE_TUNING_STUDIO_SQLITE_DB, else .app/state.db in the project root)."),
        click.option("--offline", is_flag=True, help="Skip the Hub (features of Hub datasets are then left as they are)."),
        click.option("--prune", is_flag=True, help="Delete managed objects that no manifest declares any more."),
        click.option("--max-deletions", default=5, show_default=True, type=click.IntRange(min=0), help="Block a plan that deletes more objects than this."),
        click.option("--no-cache", is_flag=True, envvar="FTCTL_NO_CACHE", help="Parse every file again."),
        click.option("--backend", type=click.Choice(["local", "cml"]), expose_value=False, callback=_set_backend,
                     help="Where new jobs run unless their manifest says (spec.backend). Default: $FTCTL_BACKEND, "
                          "ftctl.toml, else local. Launched jobs stay where they run."),
    ]):
        f = decorator(f)
    return f


def _selection_args(*, replace: bool):  # type: ignore[no-untyped-def]
    """--target and -l (and, on plan and apply, --replace): which objects to plan, as typed."""
    def decorate(f):  # type: ignore[no-untyped-def]
        options = [
            click.option("--target", "target", multiple=True, metavar="KIND/NAME",
                         help="Only this object and what it references (repeatable). The plan is partial: nothing else is "
                              "changed or deleted."),
            click.option("-l", "--selector", "selector", multiple=True, metavar="KEY=VALUE",
                         help="Only objects whose metadata.labels match (repeatable, all must match; also KEY!=VALUE and KEY), "
                              "and what they reference. The plan is partial."),
        ]
        if replace:
            options.append(click.option("--replace", "replace", multiple=True, metavar="KIND/NAME",
                                        help="Replace this object even if it did not change: write its row anew, or run its "
                                             "job as a new generation (repeatable)."))
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def _select(target: tuple[str, ...], selector: tuple[str, ...], replace: tuple[str, ...] = ()) -> Any:
    from reconciler.selection import SelectArgs

    return SelectArgs(target, selector, replace)


@cli.command()
@_manifest_args
@_selection_args(replace=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="text for people; json is the plan file; markdown for a pull-request comment.")
@_output_option("Write the plan file (JSON, with its digest; signed when $FTCTL_PLAN_KEY is set) for `ftctl apply FILE`; "
                "--format still says what is shown.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 no changes, 2 changes, 3 blocked by policy, 1 error.")
def plan(paths: tuple[str, ...], files: tuple[str, ...], store: str | None, offline: bool, prune: bool, max_deletions: int,
         no_cache: bool, target: tuple[str, ...], selector: tuple[str, ...], replace: tuple[str, ...], fmt: str,
         output: str | None, detailed_exitcode: bool) -> None:
    """Show what apply would change in the store, and why.

    Reads the manifests (PATHS, default: the current folder) and the store once; writes nothing
    to the store. With -o the plan is saved as JSON; `ftctl apply FILE` then applies exactly it.
    The file carries a digest of its whole content; with FTCTL_PLAN_KEY set (a secret, never
    written anywhere) it is also signed (HMAC-SHA256), for plans that travel between machines.
    """
    from reconciler.engine import plan_file_text
    from reconciler.plan import Policy
    from reconciler.views import render_plan

    report = _report_or_exit(paths + files, store=store, offline=offline, no_cache=no_cache,
                           policy=Policy(prune=prune, max_deletions=max_deletions), select=_select(target, selector, replace)).plan
    if output:
        _emit(plan_file_text(report), output)
    _show(render_plan(fmt, report), fmt, None)
    if report.is_blocked():
        sys.exit(EXIT_BLOCKED)
    sys.exit(EXIT_CHANGES if detailed_exitcode and report.has_changes() else EXIT_OK)


def _report_or_exit(paths: tuple[str, ...], *, store: str | None, offline: bool, no_cache: bool, policy: Any,
                    select: Any = None) -> Any:
    """The plan report (its plan, and the manifests it was made from), or exit 1 after showing the errors."""
    from reconciler.engine import make_plan
    from reconciler.views import render_diagnostics

    report = make_plan(list(paths) or ["."], store=store, policy=policy, offline=offline, use_cache=not no_cache, select=select)
    shown = [d for d in report.validation.diagnostics if report.plan is None or d.severity.is_error() or d.severity.value == "warning"]
    if shown:
        click.echo(render_diagnostics("text", shown, files=len(report.validation.files), manifests=report.validation.documents), err=True, nl=False)
    if report.plan is None:
        click.echo("ftctl: no plan: fix the errors above first", err=True)
        sys.exit(EXIT_ERRORS)
    return report


@cli.command()
@_manifest_args
@_selection_args(replace=True)
@click.option("--auto-approve", is_flag=True,
              help="Apply without asking: required when stdin is not a terminal (a saved plan file applies without asking).")
@click.option("--lock-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="Wait this long for another apply's lock (or another program's hold on the store file), then exit "
                   "naming its holder. The lock's lease lives FTCTL_LOCK_TTL_S seconds (default 60), renewed while "
                   "the apply runs.")
@click.option("--wait", is_flag=True, help="Keep applying until every job has finished (train, then evaluate, then export).")
@click.option("--poll", default=2.0, show_default=True, type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="With --wait: how often to look at running jobs.")
@click.option("--create-store", is_flag=True,
              help="Create the store if it does not exist (without it, apply refuses a missing store; a terminal asks).")
@click.option("--override-policy", "override_keys", multiple=True, metavar="KEY",
              help="Apply although the plan breaks this [policy] key of ftctl.toml (repeatable; e.g. max_cost). Needs "
                   "--reason; printed, and written to the store's apply journal with who applied and why.")
@click.option("--reason", default=None, metavar="TEXT", help="Why the policy is overridden (required with --override-policy).")
def apply(paths: tuple[str, ...], files: tuple[str, ...], store: str | None, offline: bool, prune: bool, max_deletions: int,
          no_cache: bool, target: tuple[str, ...], selector: tuple[str, ...], replace: tuple[str, ...], auto_approve: bool,
          lock_timeout: float, wait: bool, poll: float, create_store: bool, override_keys: tuple[str, ...],
          reason: str | None) -> None:
    """Make the store match the manifests: plan, show, confirm, apply; launch the jobs that are due.

    PATHS are manifest files or folders, or one saved plan file (from `ftctl plan -o`), which is
    applied exactly as saved and refused if the store changed since, if the file was edited
    (digest), if FTCTL_PLAN_KEY is set and the file is not signed with it, or if it would write
    outside the objects it names. Jobs are level-triggered:
    each apply launches what is ready, registers the adapter a finished training produced and
    launches the evaluations and exports waiting on it; --wait repeats until all jobs are done.
    Safe to run again: nothing is written or launched twice. Exit 0 done, 1 error or a failed
    job (with --wait), 3 blocked by policy.
    """
    from reconciler.engine import read_plan_file, start_queued_jobs
    from reconciler.plan import Policy
    from reconciler.views import chain_text, render_plan
    from reconciler.waitchain import Approval, later, wait_chain

    override = _override(override_keys, reason)
    targets = paths + files
    saved = len(targets) == 1 and targets[0].endswith(".json") and os.path.exists(targets[0]) and not os.path.isdir(targets[0])
    asks = not (auto_approve or saved)  # a saved plan was reviewed when it was made
    if asks and not sys.stdin.isatty():
        click.echo("ftctl: error: no terminal to confirm on: pass --auto-approve to apply without asking", err=True)
        sys.exit(EXIT_ERRORS)
    manifests = () if saved else targets  # their project root holds the default store and the jobs (a saved plan: the current folder's)
    start_queued_jobs(paths=manifests)  # jobs an earlier apply queued take the slots that freed up, before anything new
    policy = Policy(prune=prune, max_deletions=max_deletions)
    if saved:
        the_plan, chain = read_plan_file(targets[0]), []
    else:
        report = _report_or_exit(targets, store=store, offline=offline, no_cache=no_cache, policy=policy,
                                 select=_select(target, selector, replace))
        the_plan, chain = report.plan, wait_chain(report.plan, report.validation.manifests) if wait else []
    click.echo(render_plan("text", the_plan) + chain_text(chain), nl=False)
    if _blocked(the_plan, override, announce=True):
        sys.exit(EXIT_BLOCKED)
    if the_plan.actionable():
        _missing_store(store, manifests, create=create_store or (saved and not the_plan.store_exists))
    question = "Apply these changes?" if the_plan.actionable() else "Launch the jobs above as they become ready?"
    if asks and (the_plan.actionable() or later(chain)) and not click.confirm(question, default=False):
        click.echo("Nothing applied.")
        sys.exit(EXIT_OK)
    if the_plan.actionable():
        _execute(the_plan, store=store, lock_timeout=lock_timeout, paths=manifests, override=override)
    if not wait:
        _show_evaluations(the_plan)
        sys.exit(EXIT_OK)
    if saved:
        targets = ()  # a saved plan is applied once; --wait then follows the manifests' jobs
        click.echo("--wait after a saved plan: pass the manifests to keep converging.", err=True)
        sys.exit(EXIT_OK)
    sys.exit(_converge(targets, store=store, offline=offline, no_cache=no_cache, policy=policy, lock_timeout=lock_timeout, poll=poll,
                       select=_select(target, selector), approval=Approval.of(chain).after(the_plan), asks=asks, override=override))  # --replace is done: the later rounds only converge  # --replace is done: the later rounds only converge


def _missing_store(store: str | None, paths: tuple[str, ...], *, create: bool) -> None:
    """Refuse to write to a store that is not there unless --create-store says so, a saved plan
    made for a missing store says so (its review showed the new store), or a terminal's user
    does: a mistyped --store is named before anything is written."""
    from reconciler.engine import missing_store_message, project, store_exists

    location = project(paths, store).store
    if create or store_exists(location):
        return
    if sys.stdin.isatty() and click.confirm(f"The store {location} does not exist. Create it?", default=False):
        return
    click.echo(f"ftctl: error: {missing_store_message(location)}", err=True)
    sys.exit(EXIT_ERRORS)


def _override(keys: tuple[str, ...], reason: str | None) -> Any:
    """`--override-policy KEY... --reason TEXT` as a `policy.Override` (None without); an unknown
    key (with a did-you-mean) or a missing reason exits 1."""
    from reconciler.policy import Override, unknown_keys

    if not keys:
        if reason is not None:
            click.echo("ftctl: error: --reason goes with --override-policy KEY", err=True)
            sys.exit(EXIT_ERRORS)
        return None
    problems = unknown_keys(keys)
    if problems:
        click.echo(f"ftctl: error: --override-policy: {'; '.join(problems)}", err=True)
        sys.exit(EXIT_ERRORS)
    if not (reason or "").strip():
        click.echo("ftctl: error: --override-policy needs --reason TEXT: an override is recorded with who applied and why", err=True)
        sys.exit(EXIT_ERRORS)
    return Override(tuple(dict.fromkeys(keys)), (reason or "").strip())


def _blocked(the_plan: Any, override: Any, *, announce: bool = False) -> bool:
    """Whether the plan stays blocked after the override waives its policy keys' blockers; with
    `announce`, says on stderr what the override waives (or that it waives nothing)."""
    from reconciler.policy import waive
    from reconciler.views.printable import printable

    rest, waived = waive(the_plan, override)
    if announce and override is not None:
        if waived:
            click.echo(printable(f"ftctl: policy override ({', '.join(override.keys)}), reason: {override.reason}; waives:\n"
                                 + "".join(f"  {b.code} {b.address}: {b.message}\n" for b in waived)
                                 + "It is recorded in the store's apply journal with who applied."), err=True)
        else:
            click.echo(f"ftctl: --override-policy {', '.join(override.keys)}: nothing in this plan is blocked by it", err=True)
    return rest.is_blocked()


def _execute(the_plan: Any, *, store: str | None, lock_timeout: float, paths: tuple[str, ...], override: Any = None) -> None:
    from reconciler.engine import execute_plan
    from reconciler.views import summary_line

    def progress(number: int, total: int, batch: Any) -> None:
        what = ", ".join(f"{c.action.value} {c.address}" for c in batch[:3]) + (f" (+{len(batch) - 3})" if len(batch) > 3 else "")
        click.echo(f"[{number}/{total}] {what}", err=True)

    result = execute_plan(the_plan, store=store, lock_wait_s=lock_timeout, on_step=progress, paths=paths, override=override)
    note = f"; abandoned {result.abandoned_intents} unfinished step(s) of an interrupted apply" if result.abandoned_intents else ""
    launched = f"; launched {', '.join(o.job_name for o in result.launched)}" if result.launched else ""
    click.echo(f"Applied: {summary_line(the_plan)} (serial {result.serial}){launched}{note}.")


def _show_evaluations(the_plan: Any) -> None:
    """After an apply: base vs adapter of the evaluations the store has results for (none: nothing)."""
    from reconciler.views.evaluations import evaluations_text
    from reconciler.views.printable import printable

    if the_plan.evaluations:
        click.echo(printable(evaluations_text(the_plan.evaluations, width=_width())), nl=False)


def _converge(targets: tuple[str, ...], *, store: str | None, offline: bool, no_cache: bool, policy: Any,
              lock_timeout: float, poll: float, select: Any, approval: Any, asks: bool, override: Any = None) -> int:
    """Plan and apply again until no job is running and nothing is left to do; show progress. A
    round that would launch a job the approved chain did not show is asked for again (`asks`), or
    announced (--auto-approve)."""
    from reconciler.views.terminal import WaitDisplay

    _collect_garbage()
    display = WaitDisplay(sys.stderr, _screen(sys.stdout, sys.stderr))
    try:
        with display:
            return _rounds(targets, store=store, offline=offline, no_cache=no_cache, policy=policy, lock_timeout=lock_timeout,
                           poll=poll, select=select, approval=approval, asks=asks, display=display, override=override)
    except KeyboardInterrupt:
        _interrupted(display.running())
        return EXIT_INTERRUPTED


def _interrupted(running: list[tuple[str, str]]) -> None:
    """Ctrl-C during --wait: ftctl stops waiting, the jobs do not; say which, and how to follow or cancel them."""
    from reconciler.views.printable import printable

    if not running:
        click.echo("Interrupted: ftctl stopped waiting; no job was running. `ftctl apply --wait` again goes on.", err=True)
        return
    lines = ["Interrupted: ftctl stopped waiting; these jobs keep running:",
             *(f"  {address}: {line}" for address, line in running),
             "Follow one:  " + "   ".join(f"ftctl logs {address} -f" for address, _ in running),
             "Cancel one:  " + "   ".join(f"ftctl cancel {address}" for address, _ in running),
             "`ftctl apply --wait` again follows them and launches what waits on them."]
    click.echo(printable("\n".join(lines)), err=True)


def _rounds(targets: tuple[str, ...], *, store: str | None, offline: bool, no_cache: bool, policy: Any, lock_timeout: float,
            poll: float, select: Any, approval: Any, asks: bool, display: Any, override: Any = None) -> int:
    """The rounds of --wait, each job's line shown on `display`."""
    import time

    from reconciler.engine import start_queued_jobs
    from reconciler.runtime import JobState
    from reconciler.views import job_lines

    while True:
        start_queued_jobs(paths=targets)
        report = _report_or_exit(targets, store=store, offline=offline, no_cache=no_cache, policy=policy, select=select)
        the_plan = report.plan
        display.update(job_lines(the_plan))
        if _blocked(the_plan, override):
            return EXIT_BLOCKED
        if the_plan.actionable():
            approval = _approve_round(the_plan, report.validation.manifests, approval, asks=asks, display=display)
            _execute(the_plan, store=store, lock_timeout=lock_timeout, paths=targets, override=override)
            display.update([(c.address, f"running: launched {', '.join(launch.job_name for launch in c.launches)}")
                            for c in the_plan.changes if c.launches], quiet=True)
            continue
        active = [c for c in the_plan.changes if c.job_active()]
        if not active:
            failed = [c for c in the_plan.changes if JobState.FAILED in c.job_states]
            waiting = [c for c in the_plan.changes if c.waits_for]
            for change in failed:
                click.echo(f"ftctl: {change.address} {change.job_summary}", err=True)
            for change in waiting:
                click.echo(f"ftctl: {change.address} still waits: {change.reason}", err=True)
            click.echo("Converged." if not failed else "Stopped: a job failed.", err=True)
            _show_evaluations(the_plan)
            return EXIT_ERRORS if failed else EXIT_OK
        time.sleep(poll)


def _approve_round(the_plan: Any, manifests: Any, approval: Any, *, asks: bool, display: Any) -> Any:
    """The approval after this round of --wait: launches the approved chain did not show are asked
    for on the terminal (exit on no) or, with --auto-approve, printed; their own chain is added."""
    from reconciler.views import chain_text, render_plan
    from reconciler.views.printable import printable
    from reconciler.waitchain import wait_chain

    unshown = approval.unshown(the_plan)
    if not unshown:
        return approval.after(the_plan)
    chain = wait_chain(the_plan, manifests)
    notes = [printable(f"{c.address} launches {', '.join(launch.job_name for launch in c.launches)}, which the chain shown before did not include")
             for c in unshown]
    if not asks:
        for note in notes:
            click.echo(f"ftctl: {note} (--auto-approve: going on)", err=True)
        return approval.extended(chain).after(the_plan)
    with display.paused():
        click.echo(render_plan("text", the_plan) + chain_text(chain) + "".join(f"\n  {note}" for note in notes) + "\n", nl=False)
        confirmed = click.confirm("Apply this round too?", default=False)
    if not confirmed:
        click.echo("Stopped: nothing more applied; jobs already launched keep running (`ftctl status`).")
        sys.exit(EXIT_OK)
    return approval.extended(chain).after(the_plan)


_SWEEP_FILES = click.option("--file", "files", multiple=True, type=click.Path(), metavar="PATH",
                            help="Manifests that declare a sweep named by ADDRESS (default: the current folder): its trials' jobs.")


@cli.command()
@click.argument("address")
@click.option("--store", metavar="PATH|URL")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the job writes, until it ends.")
@_SWEEP_FILES
def logs(address: str, store: str | None, follow: bool, files: tuple[str, ...]) -> None:
    """Print the log of a job (ADDRESS is Kind/name, e.g. FineTuningJob/demo-ticketing-lora; a sweep's: every trial's)."""
    import time

    from reconciler.engine import find_job

    if follow:
        _collect_garbage()
    backend, names = find_job(store, address, paths=files)
    for name in names:
        path = backend.log_path(name)
        click.echo(f"==> {name} ({path})", err=True)
        if not path.exists():
            click.echo("(no log yet: the job has not started)", err=True)
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            while True:
                chunk = handle.read()
                if chunk:
                    click.echo(chunk, nl=False)
                if not follow or backend.observe(name).state.is_terminal():
                    if follow:
                        click.echo(handle.read(), nl=False)
                    break
                time.sleep(0.5)


@cli.command()
@click.argument("address")
@click.option("--store", metavar="PATH|URL")
@_SWEEP_FILES
def cancel(address: str, store: str | None, files: tuple[str, ...]) -> None:
    """Stop a running job (ADDRESS is Kind/name; a sweep's: every trial's); it is reported as failed (cancelled) and not retried."""
    from reconciler.engine import find_job

    backend, names = find_job(store, address, paths=files)
    stopped = [name for name in names if backend.cancel(name)]
    click.echo(f"Stopped {', '.join(stopped)}." if stopped else f"{address}: no job of it is running.")


def _interval(_ctx: Any, _param: Any, value: str) -> float:
    from reconciler.agent import parse_interval

    try:
        return parse_interval(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@cli.command()
@click.option("--repo", required=True, metavar="URL|PATH", help="The Git repository to follow (a URL, or a local or bare repository's path).")
@click.option("--branch", default="main", show_default=True)
@click.option("--path", "path", default="specs/", show_default=True, help="The manifests' folder inside the repository.")
@click.option("--interval", default="60s", show_default=True, callback=_interval, help="Time between cycles: 60s, 5m, or seconds.")
@click.option("--self-heal", is_flag=True, help="Put drift (rows changed outside ftctl) back; without it drift is only reported.")
@click.option("--store", metavar="PATH|URL", help="The Studio store, a SQLite file (default: $FINE_TUNING_STUDIO_SQLITE_DB, else .app/state.db in the project root).")
@click.option("--offline", is_flag=True, help="Skip the Hub.")
@click.option("--once", is_flag=True, help="Run one cycle and exit (as --max-cycles 1).")
@click.option("--max-cycles", type=click.IntRange(min=1), default=None, help="Exit after this many cycles (default: run until SIGTERM).")
@click.option("--workdir", default=".app/agent/repo", show_default=True, type=click.Path(file_okay=False), help="The agent's clone.")
@click.option("--max-failures", default=3, show_default=True, type=click.IntRange(min=1),
              help="Give up on a commit after this many failed applies (until a newer commit arrives).")
@click.option("--lock-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS")
@click.option("--publish", metavar="SNAPSHOT.json", type=click.Path(dir_okay=False),
              help="After each cycle that applied something, write the store's snapshot here (for pull-request checks).")
def agent(repo: str, branch: str, path: str, interval: float, self_heal: bool, store: str | None, offline: bool, once: bool,
          max_cycles: int | None, workdir: str, max_failures: int, lock_timeout: float, publish: str | None) -> None:
    """Follow a Git branch and keep the store at its last commit (the pull-based GitOps agent).

    Each cycle fetches --branch into a clone under --workdir; a new commit is checked out and
    applied (recorded with its sha, actor ftctl-agent); a commit older than the last applied one
    (a force-push back) is refused. An unchanged commit is planned again: jobs advance, drift is
    reported (and put back with --self-heal). One JSON line per cycle on stdout. State lives in the
    store (ftctl_meta agent.*). SIGTERM or SIGINT: the current cycle finishes, exit 0. With --once
    or --max-cycles the exit status is the last cycle's: 0 applied or unchanged, 3 blocked, 1 otherwise.
    """
    import json as jsonlib

    from reconciler.agent import AgentSettings, run_agent
    from reconciler.engine import project

    _collect_garbage()
    store = project([], store).store  # the current folder's project's, not the clone's: the clone holds the manifests
    settings = AgentSettings(repo=repo, branch=branch, path=path, workdir=workdir, store=store, offline=offline,
                             self_heal=self_heal, max_failures=max_failures, lock_wait_s=lock_timeout, publish=publish)
    sys.exit(run_agent(settings, interval_s=interval, max_cycles=1 if once else max_cycles,
                       emit=lambda report: click.echo(jsonlib.dumps(report.to_dict()))))


@cli.command(name="import")
@click.option("--store", metavar="PATH|URL", help="The Studio store, a SQLite file (default: $FINE_TUNING_STUDIO_SQLITE_DB, else .app/state.db in the project root).")
@click.option("--out", "out_dir", default="imported", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the manifests (one file per kind).")
@click.option("--force", is_flag=True, help="Overwrite manifest files that already exist in --out.")
@click.option("--lock-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS")
@click.option("--auto-approve", is_flag=True, help="Adopt without asking: required when stdin is not a terminal.")
def import_(store: str | None, out_dir: str, force: bool, lock_timeout: float, auto_approve: bool) -> None:
    """Take existing Studio rows under management.

    Writes a manifest for every row ftctl does not manage yet (annotated with the row's id,
    ftctl.io/store-id), then shows the adoption's plan, asks, and adopts those rows in one apply:
    from then on `ftctl plan` over the manifests shows no changes until Git or the Studio changes
    something. Jobs the Studio ran are adopted as history: nothing is launched for them. An object
    that cannot be expressed as a valid manifest is named and left out, with what depends on it;
    the rest is adopted and the exit status is 1 (a partial import).
    """
    from reconciler.engine import import_rows
    from reconciler.views import render_diagnostics, render_plan

    if not (auto_approve or sys.stdin.isatty()):
        click.echo("ftctl: error: no terminal to confirm on: pass --auto-approve to import without asking", err=True)
        sys.exit(EXIT_ERRORS)

    def approve(the_plan: Any) -> bool:
        click.echo(render_plan("text", the_plan), nl=False)
        return click.confirm("Adopt these rows?", default=False)

    report = import_rows(store, out_dir, lock_wait_s=lock_timeout, overwrite=force, approve=None if auto_approve else approve)
    _skipped(report.skipped)
    if not report.objects:
        click.echo("Nothing to import: ftctl already manages every row of the store." if not report.skipped else
                   "Nothing adopted: every object left to import is one that cannot be adopted (above).")
        sys.exit(EXIT_ERRORS if report.skipped else EXIT_OK)
    click.echo(f"Wrote {report.objects} manifests to {', '.join(report.files)}.")
    _secret_variables(report.variables)
    if report.plan is not None and report.plan.plan is None:
        click.echo(render_diagnostics("text", report.plan.validation.diagnostics, files=len(report.plan.validation.files),
                                      manifests=report.plan.validation.documents), err=True, nl=False)
        click.echo("ftctl: the rows were not adopted: fix the manifests above, then `ftctl apply` them", err=True)
        sys.exit(EXIT_ERRORS)
    if report.plan is not None and report.plan.plan is not None and report.plan.plan.is_blocked():
        click.echo(render_plan("text", report.plan.plan), nl=False)
        sys.exit(EXIT_BLOCKED)
    if report.applied is None:
        click.echo(f"Nothing adopted: the manifests stay in {out_dir}; `ftctl apply` them to adopt the rows.")
        sys.exit(EXIT_ERRORS if report.skipped else EXIT_OK)
    partial = f"; {len(report.skipped)} left out (a partial import)" if report.skipped else ""
    click.echo(f"Adopted {report.objects} objects (serial {report.applied.serial}){partial}.")
    if report.skipped:
        sys.exit(EXIT_ERRORS)


def _skipped(skipped: Any) -> None:
    """Name each object a partial import left out, and why (its first error)."""
    if skipped:
        click.echo(f"ftctl: {len(skipped)} objects cannot be adopted and are left out (the rest is adopted):", err=True)
        for one in skipped:
            click.echo(f"  {one.address}: {one.why}", err=True)


@cli.command(name="export-manifests")
@click.option("--store", metavar="PATH|URL", help="The Studio store, a SQLite file (default: $FINE_TUNING_STUDIO_SQLITE_DB, else .app/state.db in the project root).")
@click.option("--out", "out_dir", default="exported", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite manifest files that already exist in --out.")
def export_manifests(store: str | None, out_dir: str, force: bool) -> None:
    """Dump every row of a store as manifests (writes files only; the store is not touched)."""
    from reconciler.engine import export_manifests as run_export

    report = run_export(store, out_dir, overwrite=force)
    click.echo(f"Wrote {report.objects} manifests to {', '.join(report.files) or out_dir}.")
    _secret_variables(report.variables)


def _secret_variables(names: tuple[str, ...]) -> None:
    if names:
        click.echo(f"The rows held secrets; the manifests name them ({{from_env: NAME}}) instead: set {', '.join(names)} "
                   "(each to the value its row held) where jobs run, locally or in the CML project.")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--store", metavar="PATH|URL", help="The Studio store, a SQLite file (default: $FINE_TUNING_STUDIO_SQLITE_DB, else .app/state.db in the project root).")
@click.option("--offline", is_flag=True, help="Skip the Hub.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people (fitted to the terminal, 100 columns when unknown); json for machines.")
@_output_option("Write the report to this file instead of the screen.")
@_selection_args(replace=False)
def status(paths: tuple[str, ...], store: str | None, offline: bool, fmt: str, output: str | None, target: tuple[str, ...],
           selector: tuple[str, ...]) -> None:
    """Each object's sync state (synced, out of sync, drifted, missing, waiting, orphaned) and health.

    PATHS are the manifests (default: the current folder). Exit 0 when everything is synced,
    2 when something is not.
    """
    from reconciler.engine import status as run_status
    from reconciler.views.status import render_status

    report, rows, jobs = run_status(list(paths) or ["."], store=store, offline=offline, select=_select(target, selector))
    if report.plan is None:
        _report_or_exit(paths, store=store, offline=offline, no_cache=False, policy=None)
    evaluations = report.plan.evaluations if report.plan else ()
    _show(render_status(fmt, rows, jobs, evaluations=evaluations, width=_width()), fmt, output)
    sys.exit(EXIT_OK if all(r.sync.is_synced() for r in rows) else EXIT_CHANGES)


def _inspect_args(f):  # type: ignore[no-untyped-def]
    """The options get and describe share: the store, manifests for sync state, output."""
    for decorator in reversed([
        click.option("-f", "--file", "files", multiple=True, type=click.Path(),
                     help="Manifests (file or folder, repeatable): sync and health are then computed as `ftctl status` does."),
        click.option("--store", metavar="PATH|URL", help="The Studio store, or a snapshot file (*.json from `ftctl state pull`)."),
        click.option("--offline", is_flag=True, help="With -f: skip the Hub."),
        click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
                     help="table for people; json or yaml for machines (kubectl's -o json is --format json here)."),
        _output_option("Write the output to this file instead of the screen."),
    ]):
        f = decorator(f)
    return f


@cli.command()
@click.argument("kind")
@click.argument("name", required=False)
@_inspect_args
@click.option("-A", "--all", "unmanaged", is_flag=True, help="Also list the Studio rows ftctl does not manage.")
def get(kind: str, name: str | None, files: tuple[str, ...], store: str | None, offline: bool, fmt: str, output: str | None,
        unmanaged: bool) -> None:
    """List the objects of a KIND in the store (one, with NAME), as kubectl get does. Read-only.

    KIND is a kind in any case, its plural or a short name (datasets, ds, models, prompts, configs,
    adapters, ftjobs or jobs, evaljobs or evals, exports), or all. Without -f the SYNC column is -:
    the manifests say what the store should hold. Exit 0, or 1 on an unknown kind or name.
    """
    import time

    from reconciler.engine import get_objects
    from reconciler.views.inspection import render_items

    inspected = get_objects(kind, name, files, store=store, offline=offline, unmanaged=unmanaged or name is not None)
    _inspection_errors(inspected.report)
    _show(render_items(fmt, inspected.items, now=time.time(), width=_width()), fmt, output)


@cli.command()
@click.argument("address", metavar="KIND/NAME")
@_inspect_args
def describe(address: str, files: tuple[str, ...], store: str | None, offline: bool, fmt: str, output: str | None) -> None:
    """Show everything about one object: state, manifest, store rows, jobs, metrics, related objects, events.

    KIND/NAME takes the kinds as `get` does (ds/demo-tickets). The manifest is the one -f gives,
    else the spec ftctl recorded (exports); rows are shown with secrets masked; events are ftctl's
    history of the object with the apply (actor, commit) that made each change. Read-only.
    """
    import time

    from reconciler.engine import describe_object
    from reconciler.views.inspection import render_described

    report, documents = describe_object(address, files, store=store, offline=offline)
    _inspection_errors(report)
    _show(render_described(fmt, documents, now=time.time()), fmt, output)


@cli.command()
@click.argument("address", metavar="KIND/NAME")
@click.option("--store", metavar="PATH|URL", help="The Studio store, or a snapshot file (*.json from `ftctl state pull`).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people (fitted to the terminal, 100 columns when unknown); json for machines.")
@_output_option("Write the history to this file instead of the screen.")
def history(address: str, store: str | None, fmt: str, output: str | None) -> None:
    """List each generation of a job object, oldest first, as ftctl recorded it. Read-only.

    KIND/NAME is a FineTuningJob, EvaluationJob or ModelExport (kinds as `get` takes them: ftjob/NAME,
    evals/NAME, export/NAME). Each generation shows when it ran, whether it launched its own jobs or
    reused an earlier generation's (and which), the commit it was planned from, its jobs' states,
    metrics and measured runtime, the device-hours and cost the plan estimated at launch, and its
    inputs: input digest, reuse key, dataset digest, base revision, config digests, ftctl version
    (ftctl_lineage; the runners log the same digests as ftctl.lineage.* MLflow tags). Exit 0, or 1
    when the store has no history of the object.
    """
    from reconciler.engine import object_history
    from reconciler.views.history import render_history

    _show(render_history(fmt, object_history(address, store=store), width=_width()), fmt, output)


def _inspection_errors(report: Any) -> None:
    """The manifests given to get or describe did not validate: their errors, exit 1."""
    from reconciler.views import render_diagnostics

    if report is None or report.plan is not None:
        return
    errors = [d for d in report.validation.diagnostics if d.severity.is_error()]
    click.echo(render_diagnostics("text", errors, files=len(report.validation.files), manifests=report.validation.documents),
               err=True, nl=False)
    click.echo("ftctl: fix the errors above first (or leave out -f)", err=True)
    sys.exit(EXIT_ERRORS)


def _width() -> int:
    import shutil

    from reconciler.views.inspection import WIDTH

    return shutil.get_terminal_size((WIDTH, 24)).columns


@cli.command()
@click.argument("address")
@click.option("--store", metavar="PATH|URL")
def protect(address: str, store: str | None) -> None:
    """Protect a managed object (Kind/name) from deletion, even after its manifest is gone."""
    from reconciler.engine import set_protection

    set_protection(store, address, True)
    click.echo(f"{address} is protected: prune will refuse to delete it.")


@cli.command()
@click.argument("address")
@click.option("--store", metavar="PATH|URL")
def unprotect(address: str, store: str | None) -> None:
    """Lift the protection of a managed object (Kind/name)."""
    from reconciler.engine import set_protection

    set_protection(store, address, False)
    click.echo(f"{address} is no longer protected.")


@cli.command()
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Folder to write (default: the checkout's schemas/).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 naming each stale file (default: the schemas in use).")
@click.option("--with-libraries", is_flag=True, help="Also regenerate config-body schemas from the installed ML libraries.")
def schema(out: str | None, check: bool, with_libraries: bool) -> None:
    """Regenerate the JSON Schemas in schemas/ (editor completion, config-body checks)."""
    from pathlib import Path

    from reconciler import schemagen
    from reconciler.engine import EngineError, schemas_dir

    checkout = schemagen.checkout_folder()
    if check:
        problems = schemagen.check(Path(out) if out else checkout or schemas_dir())
        for problem in problems:
            click.echo(f"stale: {problem}", err=True)
        sys.exit(EXIT_ERRORS if problems else EXIT_OK)
    folder = Path(out) if out else checkout
    if folder is None:
        raise EngineError(f"ftctl schema regenerates a checkout's schemas/, and this ftctl is installed ({schemas_dir()}): "
                          "run it in a checkout of ftctl, or give --out FOLDER")
    for path in schemagen.write(folder, with_libraries=with_libraries):
        click.echo(f"wrote {path}")


@cli.command()
@click.argument("code", required=False)
def rules(code: str | None) -> None:
    """List the rule catalog, or explain one CODE (e.g. ftctl rules FT-002)."""
    from reconciler.catalog import RULES

    if code:
        rule = RULES.get(code.upper())
        if rule is None:
            raise click.BadParameter(f"no rule {code!r}; `ftctl rules` lists them", param_hint="CODE")
        origin = "the Studio's rule catalog" if rule.studio else "ftctl (the Studio lacks it)"
        click.echo(f"{rule.code} ({rule.severity.value}, from {origin})\n  {rule.title}\n  hint: {rule.hint}")
        return
    for rule in sorted(RULES.values(), key=lambda r: r.code):
        click.echo(f"{rule.code}  {rule.severity.value:<7}  {rule.title}")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--store", metavar="PATH|URL", help="The Studio store, or a snapshot file (*.json from `ftctl state pull`).")
@click.option("--offline", is_flag=True, help="Skip the Hub.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="text for people; json (versioned); markdown for an issue or pull-request comment.")
@_output_option("Write the report to this file instead of the screen.")
@_selection_args(replace=False)
def drift(paths: tuple[str, ...], store: str | None, offline: bool, fmt: str, output: str | None, target: tuple[str, ...],
          selector: tuple[str, ...]) -> None:
    """List what differs between the manifests and the store.

    Every managed object whose row or job differs from its manifest (missing, drifted, failed,
    out of sync, orphaned) and every Studio row ftctl does not manage. PATHS are the manifests
    (default: the current folder). Exit 0 when there is none, 2 when there is drift, 1 on error.
    """
    from reconciler.engine import drift as run_drift
    from reconciler.views import render_diagnostics
    from reconciler.views.drift import render_drift

    report, found = run_drift(list(paths) or ["."], store=store, offline=offline, select=_select(target, selector))
    if found is None:
        errors = [d for d in report.validation.diagnostics if d.severity.is_error()]
        click.echo(render_diagnostics("text", errors, files=len(report.validation.files), manifests=report.validation.documents),
                   err=True, nl=False)
        click.echo("ftctl: no drift report: fix the errors above first", err=True)
        sys.exit(EXIT_ERRORS)
    _show(render_drift(fmt, found), fmt, output)
    sys.exit(EXIT_CHANGES if found.has_drift() else EXIT_OK)


@cli.group()
def state() -> None:
    """Snapshots of the store, in the Studio's own database-export JSON.

    `ftctl state pull -o snapshot.json` writes one; any command that reads a store reads it with
    `--store snapshot.json` (read-only: apply goes to the store it came from).
    """


@state.command()
@click.option("--store", metavar="PATH|URL", help="The Studio store, a SQLite file (default: $FINE_TUNING_STUDIO_SQLITE_DB, else .app/state.db in the project root).")
@_output_option("The snapshot file (written atomically; its name ends in .json).", required=True, metavar="FILE.json")
def pull(store: str | None, output: str) -> None:
    """Write every table of the store (the Studio's and ftctl's) to a JSON file.

    The Studio's Database Import page loads the file as it is; `ftctl plan --store FILE` plans
    against it exactly as against the store, and `ftctl apply` of that plan applies to the store
    while nothing changed there. Two pulls of an unchanged store are byte-identical.
    """
    from reconciler.engine import pull_state
    from reconciler.views import store_label

    pulled = pull_state(store, output)
    click.echo(f"Wrote {pulled.path}: {pulled.rows} rows in {pulled.tables} tables of {store_label(pulled.store)} (serial {pulled.serial}).")


def _show(text: str, fmt: str, output: str | None) -> None:
    """A report to its file, or to the screen: a text report painted when the screen takes colour."""
    if output is None and fmt in ("text", "table"):
        text = _paint(text, sys.stdout)
    _emit(text, output)


def _paint(text: str, stream: Any) -> str:
    from reconciler.views.terminal import paint

    return paint(text, _screen(stream))


def _screen(*streams: Any) -> Any:
    """What the screen is: a terminal when every stream given is one; colour as NO_COLOR, FORCE_COLOR say."""
    from reconciler.views.terminal import screen_of

    return screen_of(terminal=all(s.isatty() for s in streams), environ=os.environ)


def _emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False, color=True)  # escapes in it are ours (views.terminal.paint decided); click's stripping is not


def main(argv: list[str] | None = None) -> Any:
    # A command builds one large, long-lived object graph (manifests, snapshot, plan) and exits:
    # the cyclic collector's passes over it cost ~8% of a large plan and free nothing. Commands
    # that loop (apply --wait, logs -f, agent) turn it back on with `_collect_garbage()`. Called
    # in-process (tests, argv given), the caller's collector is left as it is.
    if argv is None:
        gc.disable()
    try:
        return cli.main(args=argv, prog_name="ftctl", standalone_mode=True)
    except SystemExit as done:
        if argv is not None:  # called in-process (tests): exit the normal way
            raise
        _exit_now(done.code)
    except Exception as exc:  # the last line of defence: one line, never a traceback
        from reconciler.engine import EngineError

        if os.environ.get("FTCTL_DEBUG"):
            raise
        prefix = "error" if isinstance(exc, EngineError) else f"internal error ({type(exc).__name__})"
        click.echo(f"ftctl: {prefix}: {exc}", err=True)
        sys.exit(EXIT_ERRORS)


def _collect_garbage() -> None:
    """For commands that keep running: each round's plan holds reference cycles to free."""
    gc.set_threshold(100_000, 50, 100)
    gc.enable()


def _exit_now(code: object) -> None:
    """Exit without tearing down the command's large object graph (manifests, snapshot, plan):
    freeing a million objects one by one costs a big plan ~0.3 s and achieves nothing. Output is
    flushed first; stores and job launches are closed by the commands themselves."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if code is None:
        os._exit(EXIT_OK)
    os._exit(code if isinstance(code, int) else EXIT_ERRORS)


if __name__ == "__main__":
    main()
