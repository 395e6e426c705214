#!/usr/bin/env python3
"""Post ftctl's verdict on a pull request as ONE comment, updated in place on every run.

Used by the composite action (action.yml); standard library only, so it runs on any Python the
workflow has. It composes the body from what the action's steps wrote:

    python ci/pr_comment.py --key specs/ --validate-exitcode 0 --validation validate.txt \
        --plan-exitcode 2 --plan plan.md --plan-json plan.json [--plan-errors plan.err] \
        [--write body.md] [--no-post]

The first line of the comment is a hidden marker (`<!-- ftctl-plan -->`, or `<!-- ftctl-plan
key=specs/ -->` when the action runs for several manifest folders), the second a one-line summary,
then the plan's markdown (its details folded) and the validation report (folded). The comment that
starts with the marker is found among the pull request's comments (every page) and PATCHed; only
when there is none is one POSTed, so a re-run never adds a second.

Safety: the body is kept under GitHub's 65,536-character limit (folded details are cut first, with a
link to the run); the value of every environment variable whose name looks secret (TOKEN, KEY,
SECRET, PASSWORD, ...) is replaced by *** before anything is posted, written or printed; the token
only ever travels in the Authorization header. 429 and 5xx answers are retried with backoff; a
POST whose answer was lost is not repeated blindly: the comments are listed again first.

Environment: GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_EVENT_PATH (the pull request's number),
GITHUB_API_URL (default https://api.github.com), GITHUB_SERVER_URL and GITHUB_RUN_ID (the link to
the run). Exit 0 when the comment is posted (or there is nothing to comment on), 1 on an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MARKER = "ftctl-plan"
BUDGET = 60_000  # GitHub refuses comments over 65,536 characters
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|(^|_)KEY($|_)",
                         re.IGNORECASE)
MIN_SECRET_LEN = 6  # shorter values ("1", "false") would blank out ordinary words
RETRY_STATUS = {429, 500, 502, 503, 504}
ATTEMPTS = 4
PER_PAGE = 100
MAX_PAGES = 50  # 5,000 comments: a bound on a loop that talks to a server

VERDICT = {
    0: "✅ **No changes**: the store matches the manifests.",
    2: "📝 **Changes to apply**: {counts}.",
    3: "⛔ **Blocked by policy** (exit 3): this plan will not be applied ({counts}).",
}


class CommentError(Exception):
    """The comment could not be read or written."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# -- secrets -------------------------------------------------------------------------------------

def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of variables whose name looks secret, longest first (so a value inside another goes second)."""
    values = {v.strip() for k, v in environ.items() if SECRET_NAME.search(k) and len(v.strip()) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


# -- the body ------------------------------------------------------------------------------------

def marker(key: str) -> str:
    """The hidden first line; the key is cleaned so it cannot end the HTML comment."""
    key = re.sub(r"[^A-Za-z0-9._/@+=,:-]+", "_", key.strip()).replace("--", "-")
    return f"<!-- {MARKER} key={key} -->" if key else f"<!-- {MARKER} -->"


def run_url(environ: Mapping[str, str]) -> str:
    server = environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    repo, run = environ.get("GITHUB_REPOSITORY", ""), environ.get("GITHUB_RUN_ID", "")
    return f"{server}/{repo}/actions/runs/{run}" if repo and run else ""


def plan_counts(plan_json: str) -> str:
    """'2 to create, 1 to update, 1 waiting' from a plan file (format_version 1); '' when unreadable."""
    try:
        changes = json.loads(plan_json)["changes"]
    except (ValueError, KeyError, TypeError):
        return ""
    order = ["create", "update", "replace", "delete"]
    n = dict.fromkeys([*order, "waiting"], 0)
    for change in changes:
        action = "waiting" if change.get("waits_for") else change.get("action")
        if action in n:
            n[action] += 1
    parts = [f"{n[a]} to {a}" for a in order if n[a]] + ([f"{n['waiting']} waiting"] if n["waiting"] else [])
    return ", ".join(parts) or "no changes"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _fenced(text: str) -> list[str]:
    fence = "````" if "```" in text else "```"
    return [fence + "text", text.rstrip("\n"), fence]


def compose(*, key: str, validate_exit: int, validation: str, plan_exit: int | None, plan: str, plan_json: str,
            plan_errors: str, link: str) -> str:
    """The whole comment: marker, one summary line, the plan, the validation report, the footer."""
    where = f" `{key}`" if key else ""
    verdict_v = _last_line(validation) or f"exit {validate_exit}"  # "valid: 0 errors, 1 warning in ..."
    if validate_exit != 0:
        summary = f"❌ **Validation failed** ({verdict_v}): see the report below."
    elif plan_exit in VERDICT:
        summary = VERDICT[plan_exit].format(counts=plan_counts(plan_json) or "see below")
    else:
        summary = f"❌ **No plan** (ftctl plan exited {plan_exit}): see the errors below."
    lines = [marker(key), f"**ftctl**{where} · {summary}", ""]
    if validate_exit == 0 and plan_exit in VERDICT and plan.strip():
        lines += [plan.strip(), ""]
    elif validate_exit == 0 and plan_errors.strip():
        lines += ["<details open><summary>ftctl plan: errors</summary>", "", *_fenced(plan_errors), "", "</details>", ""]
    if validation.strip():
        opened = " open" if validate_exit != 0 else ""
        lines += [f"<details{opened}><summary>ftctl validate: {_html(verdict_v)}</summary>", "", *_fenced(validation),
                  "", "</details>", ""]
    footer = f"[workflow run]({link}) · " if link else ""
    lines.append(f"<sub>{footer}validate exit {validate_exit} · plan exit {'-' if plan_exit is None else plan_exit}</sub>")
    return "\n".join(lines) + "\n"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


DETAILS = re.compile(r"<details( open)?>\s*<summary>(.*?)</summary>.*?</details>", re.S)


def fit(body: str, link: str, budget: int = BUDGET) -> str:
    """Cut the body under budget: the longest folded details first, then the tail; say so, with the link."""
    if len(body) <= budget:
        return body
    where = f"the [workflow run]({link})" if link else "the workflow run's log"
    while len(body) > budget:
        blocks = [m for m in DETAILS.finditer(body) if "cut to fit" not in m.group(0)]
        if not blocks:
            break
        block = max(blocks, key=lambda m: len(m.group(0)))
        stub = f"<details><summary>{block.group(2)}</summary>\n\n_Cut to fit a comment: see {where}._\n\n</details>"
        body = body[: block.start()] + stub + body[block.end():]
    if len(body) > budget:
        note = f"\n\n_…cut to fit a comment: see {where}._\n"
        body = body[: budget - len(note)] + note
    return body


# -- the forge's API: one request's comments ---------------------------------------------------------

class Forge:
    """The comments of one pull or merge request over a JSON REST API: list them (every page), edit
    the marked one, or create one. Subclasses say where and how (GitHub here, GitLab in mr_note.py)."""

    edit_method = "PATCH"

    def __init__(self, api: str, token: str, *, backoff: float = 1.0, timeout: float = 30.0) -> None:
        self.api, self._token = api.rstrip("/"), token
        self.backoff, self.timeout = backoff, timeout

    def __repr__(self) -> str:  # never show the token
        return f"{type(self).__name__}({self.api!r})"

    def headers(self, token: str) -> dict[str, str]:
        raise NotImplementedError

    def list_path(self, page: int) -> str:
        raise NotImplementedError

    def create_path(self) -> str:
        raise NotImplementedError

    def edit_path(self, comment_id: int) -> str:
        raise NotImplementedError

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, *, retry: bool = True) -> Any:
        url = f"{self.api}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        for attempt in range(ATTEMPTS):
            request = urllib.request.Request(url, data=data, method=method, headers={
                "User-Agent": "ftctl-comment", **self.headers(self._token),
                **({"Content-Type": "application/json"} if data is not None else {})})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                status, wait = exc.code, _retry_after(exc.headers.get("Retry-After"))
                message = _message(exc.read())
                if not retry or status not in RETRY_STATUS or attempt == ATTEMPTS - 1:
                    raise CommentError(f"{method} {path}: HTTP {status} {message}".strip(), status) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                status, wait = None, None
                if not retry or attempt == ATTEMPTS - 1:
                    raise CommentError(f"{method} {path}: {getattr(exc, 'reason', exc)}") from None
            delay = min(wait if wait is not None else self.backoff * 2**attempt, 30.0)
            print(f"ftctl comment: {method} {path} answered {status or 'no response'}; again in {delay:.1f}s",
                  file=sys.stderr)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def comments(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            batch = self.call("GET", self.list_path(page))
            out += batch or []
            if not batch or len(batch) < PER_PAGE:
                break
        return out

    def find(self, mark: str) -> dict[str, Any] | None:
        """The oldest comment that starts with the marker (a quote of it, "> <!-- ...", does not)."""
        found = [c for c in self.comments() if (c.get("body") or "").lstrip().startswith(mark)]
        return min(found, key=lambda c: int(c["id"])) if found else None

    def edit(self, comment_id: int, body: str) -> tuple[str, int]:
        self.call(self.edit_method, self.edit_path(comment_id), {"body": body})
        return "updated", comment_id

    def upsert(self, mark: str, body: str) -> tuple[str, int]:
        """Edit the marked comment, or create one; ('updated'|'created', comment id)."""
        found = self.find(mark)
        if found:
            return self.edit(int(found["id"]), body)
        for attempt in range(ATTEMPTS):
            try:
                made = self.call("POST", self.create_path(), {"body": body}, retry=False)
                return "created", int(made["id"])
            except CommentError as exc:
                if (exc.status is not None and exc.status not in RETRY_STATUS) or attempt == ATTEMPTS - 1:
                    raise
                time.sleep(min(self.backoff * 2**attempt, 30.0))
                found = self.find(mark)  # the lost answer may hide a comment that was made
                if found:
                    return self.edit(int(found["id"]), body)
        raise AssertionError("unreachable")


class GitHub(Forge):
    """A pull request's issue comments (GitHub REST API, a Bearer token)."""

    def __init__(self, api: str, repo: str, number: int, token: str, *, backoff: float = 1.0) -> None:
        super().__init__(api, token, backoff=backoff)
        self.repo, self.number = repo, number

    def headers(self, token: str) -> dict[str, str]:
        return {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                "Authorization": f"Bearer {token}"}

    def list_path(self, page: int) -> str:
        return f"/repos/{self.repo}/issues/{self.number}/comments?per_page={PER_PAGE}&page={page}"

    def create_path(self) -> str:
        return f"/repos/{self.repo}/issues/{self.number}/comments"

    def edit_path(self, comment_id: int) -> str:
        return f"/repos/{self.repo}/issues/comments/{comment_id}"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return ""


def pull_request_number(event_path: str | None) -> int | None:
    if not event_path or not Path(event_path).is_file():
        return None
    event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    if isinstance(event.get("pull_request"), dict):
        return int(event["pull_request"]["number"])
    issue = event.get("issue")
    if isinstance(issue, dict) and issue.get("pull_request"):  # issue_comment on a pull request
        return int(issue["number"])
    return None


# -- the command ---------------------------------------------------------------------------------

def _read(path: str | None) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace") if path and Path(path).is_file() else ""


def _exit_code(text: str) -> int | None:
    return int(text) if text.strip() else None


def arguments(description: str) -> argparse.ArgumentParser:
    """The options both forges' scripts take: what ftctl's steps wrote, and whether to post."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--key", default="", help="Tells apart the comments of several ftctl checks in one repository.")
    parser.add_argument("--validate-exitcode", type=_exit_code, default=0)
    parser.add_argument("--validation", help="ftctl validate's text report.")
    parser.add_argument("--plan-exitcode", type=_exit_code, default=None, help="Empty when there was no plan.")
    parser.add_argument("--plan", help="ftctl plan --format markdown's output.")
    parser.add_argument("--plan-json", help="The plan file (ftctl plan -o) for the summary's counts.")
    parser.add_argument("--plan-errors", help="ftctl plan's stderr, shown when there is no plan.")
    parser.add_argument("--no-post", action="store_true", help="Compose only.")
    return parser


def body_of(args: argparse.Namespace, *, secrets: list[str], link: str) -> str:
    """The redacted comment, cut to fit, from the files the arguments name."""
    body = compose(key=args.key, validate_exit=1 if args.validate_exitcode is None else args.validate_exitcode,
                   validation=_read(args.validation), plan_exit=args.plan_exitcode, plan=_read(args.plan),
                   plan_json=_read(args.plan_json), plan_errors=_read(args.plan_errors), link=link)
    return fit(redact(body, secrets), link)


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = arguments("Post or update ftctl's pull-request comment.")
    parser.add_argument("--write", help="Also write the (redacted) body to this file, e.g. $GITHUB_STEP_SUMMARY.")
    args = parser.parse_args(argv)

    secrets = secret_values(env)
    link = run_url(env)
    body = body_of(args, secrets=secrets, link=link)
    if args.write:
        with open(args.write, "a", encoding="utf-8") as handle:
            handle.write(body)
    if args.no_post:
        return 0

    number = pull_request_number(env.get("GITHUB_EVENT_PATH"))
    if number is None:
        print("ftctl comment: not a pull request event; nothing to comment on")
        return 0
    token, repo = env.get("GITHUB_TOKEN", ""), env.get("GITHUB_REPOSITORY", "")
    if not token or not repo:
        print("::warning::ftctl comment: GITHUB_TOKEN or GITHUB_REPOSITORY is not set; no comment posted")
        return 0
    github = GitHub(env.get("GITHUB_API_URL") or "https://api.github.com", repo, number, token,
                    backoff=float(env.get("FTCTL_COMMENT_BACKOFF_S", "1")))
    try:
        done, comment_id = github.upsert(marker(args.key), body)
    except CommentError as exc:
        message = redact(str(exc), secrets)
        if exc.status in (403, 404):  # a fork's pull request gets a read-only token
            print(f"::warning::ftctl comment: cannot comment on pull request #{number} ({message}); "
                  "the plan is in the job summary")
            return 0
        print(f"::error::ftctl comment: {message}")
        return 1
    print(f"ftctl comment: {done} comment {comment_id} on pull request #{number}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
