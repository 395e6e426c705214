"""The `ftctl` command line: argument parsing and exit codes only (the only click user).

Imports nothing heavy at module level, so `ftctl --help` stays fast; each command imports the
engine when it runs. No traceback reaches a user: unexpected failures print one line (set
FTCTL_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

EXIT_OK, EXIT_ERRORS = 0, 1


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ftctl", prog_name="ftctl")
def cli() -> None:
    """Declarative, GitOps-style reconciler for Cloudera's Fine Tuning Studio.

    Manifests (YAML, apiVersion ftctl/v1) declare datasets, models, adapters, prompts, configs,
    fine-tuning jobs, evaluation jobs and model exports. `ftctl validate` checks them against
    every rule of the Studio and more.
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
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to a file.")
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
    _emit(text, output)
    sys.exit(EXIT_ERRORS if report.has_errors() else EXIT_OK)


@cli.command()
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Folder to write (default: schemas/).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 naming each stale file.")
@click.option("--with-libraries", is_flag=True, help="Also regenerate config-body schemas from the installed ML libraries.")
def schema(out: str | None, check: bool, with_libraries: bool) -> None:
    """Regenerate the JSON Schemas in schemas/ (editor completion, config-body checks)."""
    from pathlib import Path

    from reconciler import schemagen
    from reconciler.engine import schemas_dir

    folder = Path(out) if out else schemas_dir()
    if check:
        problems = schemagen.check(folder)
        for problem in problems:
            click.echo(f"stale: {problem}", err=True)
        sys.exit(EXIT_ERRORS if problems else EXIT_OK)
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


def _emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="ftctl", standalone_mode=True)
    except Exception as exc:  # the last line of defence: one line, never a traceback
        from reconciler.engine import EngineError

        if os.environ.get("FTCTL_DEBUG"):
            raise
        prefix = "error" if isinstance(exc, EngineError) else f"internal error ({type(exc).__name__})"
        click.echo(f"ftctl: {prefix}: {exc}", err=True)
        sys.exit(EXIT_ERRORS)


if __name__ == "__main__":
    main()
