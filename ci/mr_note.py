#!/usr/bin/env python3
"""Post ftctl's verdict on a GitLab merge request as ONE note, updated in place on every pipeline.

The GitLab counterpart of pr_comment.py (used by examples/ci/gitlab-ci.yml); standard library only.
The body is the one pr_comment.py composes (marker line, summary, the plan, the validation report,
secrets redacted, cut to fit); this module only knows where GitLab keeps notes:

    python ci/mr_note.py --key specs/ --validate-exitcode 0 --validation validate.txt \
        --plan-exitcode 2 --plan plan.md --plan-json plan.json [--plan-errors plan.err] [--no-post]

The merge request's notes are listed (every page, oldest first); the one that starts with the
marker is PUT, and only when there is none is one POSTed, so a re-run never adds a second.

Environment (GitLab's predefined variables): CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID
(absent outside a merge-request pipeline: nothing to post), CI_JOB_URL (the link), and
FTCTL_NOTE_TOKEN: a project or personal access token with the api scope (CI_JOB_TOKEN cannot
write notes), sent only in the PRIVATE-TOKEN header. Exit 0 when the note is posted (or there is
nothing to post to), 1 on an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import quote

from pr_comment import PER_PAGE, CommentError, Forge, arguments, body_of, marker, redact, secret_values


class GitLab(Forge):
    """A merge request's notes (GitLab REST API v4, a PRIVATE-TOKEN)."""

    edit_method = "PUT"

    def __init__(self, api: str, project: str, iid: int, token: str, *, backoff: float = 1.0) -> None:
        super().__init__(api, token, backoff=backoff)
        self.base = f"/projects/{quote(project, safe='')}/merge_requests/{iid}/notes"

    def headers(self, token: str) -> dict[str, str]:
        return {"Accept": "application/json", "PRIVATE-TOKEN": token}

    def list_path(self, page: int) -> str:
        return f"{self.base}?sort=asc&order_by=created_at&per_page={PER_PAGE}&page={page}"

    def create_path(self) -> str:
        return self.base

    def edit_path(self, comment_id: int) -> str:
        return f"{self.base}/{comment_id}"


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    args = arguments("Post or update ftctl's merge-request note (--no-post prints it).").parse_args(argv)
    secrets = secret_values(env)
    body = body_of(args, secrets=secrets, link=env.get("CI_JOB_URL", ""))
    if args.no_post:
        print(body, end="")
        return 0
    iid = env.get("CI_MERGE_REQUEST_IID", "")
    if not iid.isdigit():
        print("ftctl note: not a merge-request pipeline; nothing to post to")
        return 0
    token, api, project = env.get("FTCTL_NOTE_TOKEN", ""), env.get("CI_API_V4_URL", ""), env.get("CI_PROJECT_ID", "")
    if not token or not api or not project:
        print("ftctl note: FTCTL_NOTE_TOKEN, CI_API_V4_URL or CI_PROJECT_ID is not set; no note posted "
              "(the plan is in the job's log and artifacts)")
        return 0
    gitlab = GitLab(api, project, int(iid), token, backoff=float(env.get("FTCTL_COMMENT_BACKOFF_S", "1")))
    try:
        done, note_id = gitlab.upsert(marker(args.key), body)
    except CommentError as exc:
        print(f"ftctl note: {redact(str(exc), secrets)}", file=sys.stderr)
        return 1
    print(f"ftctl note: {done} note {note_id} on merge request !{iid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
