"""Hub checks: DS-002 (a huggingface Dataset exists on the Hub) and MD-002 (a huggingface Model does).

Like every module of `reconciler.online`, it imports `huggingface_hub` only inside the functions
that call it, and passes the client everything explicitly (see `reconciler.online.client`): the
endpoint, the token (the variable a manifest names in `hf_token_env`, else none at all: a token
cached on the machine is never sent), a timeout. Distinct (repo type, repo id, token variable)
checks run once each, a few at a time.

Outcomes: found -> nothing; missing, gated without a token, or token refused -> DS-002 / MD-002
error; server error, rate limit or no connection -> ON-002 warning (the check did not complete);
offline -> ON-001 note per skipped check; `hf_token_env` naming an unset variable -> ON-003 error.
A token's value never appears in a diagnostic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic
from reconciler.manifests import Manifest
from reconciler.online.client import (
    TIMEOUT_S,
    HubRepo,
    ask_each,
    endpoint_of,
    hub_api,
    hub_headers,
    hub_repo_of,
    offline_reason,
)
from reconciler.secrets import is_variable_name

# repo type -> the rule that checks such a repo exists
_CODES = {"dataset": "DS-002", "model": "MD-002"}


def _code(check: HubRepo) -> str:
    return _CODES[check.repo_type]


@dataclass(frozen=True)
class _Outcome:
    """What one Hub answer means, before it is pinned to each manifest that asked."""

    code: str
    summary: str
    hint: str | None = None
    detail: str | None = None


def check_hub(
    manifests: Sequence[Manifest], *, environ: Mapping[str, str], offline: bool
) -> list[Diagnostic]:
    """Check that huggingface Datasets and Models name repos the Hub serves (with their tokens)."""
    targets = [(m, c) for m in manifests if (c := hub_repo_of(m)) is not None]
    skipped = offline_reason(offline, environ)
    if skipped:
        return _skipped_notice(targets, skipped)
    diags: list[Diagnostic] = []
    tokens: dict[HubRepo, str | None] = {}
    asking: list[tuple[Manifest, HubRepo]] = []
    for manifest, check in targets:
        token: str | None = None
        if check.token_env:
            token = environ.get(check.token_env) or None
            if token is None:
                named = (f"names {check.token_env}, which is not set" if is_variable_name(check.token_env)
                         else "holds what looks like a token, not a variable name")  # never echoed
                summary = f"hf_token_env {named}; {_code(check)} check of {check.what} skipped"
                diags.append(_diag(manifest, "hf_token_env", _Outcome("ON-003", summary)))
                continue
        tokens.setdefault(check, token)
        asking.append((manifest, check))
    if tokens:
        endpoint = endpoint_of(environ)
        outcomes = ask_each(tokens, lambda check: _ask(check, tokens[check], endpoint))
        for manifest, check in asking:
            outcome = outcomes[check]
            if outcome is not None:
                diags.append(_diag(manifest, check.field, outcome))
    secrets = [t for t in tokens.values() if t]
    return sorted((_redact(d, secrets) for d in diags), key=Diagnostic.sort_key)


def _skipped_notice(targets: list[tuple[Manifest, HubRepo]], reason: str) -> list[Diagnostic]:
    """One notice for all skipped checks (at the first of them), not one line per manifest."""
    if not targets:
        return []
    checks = {check for _, check in targets}
    codes = [_code(c) for c in checks]
    counts = {code: codes.count(code) for code in sorted(set(codes))}
    listed = ", ".join(f"{n} {code}" for code, n in counts.items())
    first, check = min(targets, key=lambda t: (t[0].location.file, t[0].location.doc))
    summary = f"{len(checks)} Hub check{'s' * (len(checks) != 1)} skipped ({listed}): {reason}"
    detail = "first: " + check.what if len(checks) > 1 else None
    return [
        make_diag(
            "ON-001",
            summary,
            location=first.at("spec", check.field),
            address=first.address,
            detail=detail,
        )
    ]


def _diag(manifest: Manifest, field: str, outcome: _Outcome) -> Diagnostic:
    return make_diag(
        outcome.code,
        outcome.summary,
        location=manifest.at("spec", field),
        address=manifest.address,
        hint=outcome.hint,
        detail=outcome.detail,
    )


def _redact(diag: Diagnostic, secrets: list[str]) -> Diagnostic:
    def clean(text: str | None) -> str | None:
        if text is None:
            return None
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    summary = clean(diag.summary) or diag.summary
    return replace(diag, summary=summary, hint=clean(diag.hint), detail=clean(diag.detail))


def _ask(check: HubRepo, token: str | None, endpoint: str) -> _Outcome | None:
    """One check: the repo's info, then for a gated repo whether the token may read it."""
    api = hub_api(endpoint, token)
    try:
        fetch = api.model_info if check.repo_type == "model" else api.dataset_info
        info = fetch(check.repo_id, timeout=TIMEOUT_S, token=token or False)
        if not getattr(info, "gated", False):
            return None
        if token is None:
            return _gated_without_token(check)
        _auth_check(check, token, endpoint)
        return None
    except Exception as exc:  # every failure becomes a diagnostic; nothing propagates
        return _classify(exc, check, token, endpoint)


def _auth_check(check: HubRepo, token: str, endpoint: str) -> None:
    """`HfApi.auth_check`, with a timeout (the library's has none): raises when the token may not read."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    url = f"{endpoint}/api/{check.repo_type}s/{check.repo_id}/auth-check"
    hf_raise_for_status(get_session().get(url, headers=hub_headers(token), timeout=TIMEOUT_S))


def _classify(exc: Exception, check: HubRepo, token: str | None, endpoint: str) -> _Outcome:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    status = _status(exc)
    answered = f"{endpoint} answered HTTP {status}" if status else None
    if isinstance(exc, OfflineModeIsEnabled):
        return _Outcome(
            "ON-001",
            f"{_code(check)} check skipped for {check.what}: huggingface_hub is in offline mode (HF_HUB_OFFLINE)",
        )
    if isinstance(exc, HFValidationError):
        return _Outcome(_code(check), f"{check.what} is not a valid Hub repo id", detail=str(exc))
    if isinstance(exc, GatedRepoError):
        return _gated_without_token(check) if token is None else _refused(check, answered, gated=True)
    if isinstance(exc, RepositoryNotFoundError) or status == 404:
        summary = f"{check.what} was not found on the Hub"
        if token is None:
            summary += " (a private repo needs a token: set hf_token_env)"
        return _Outcome(_code(check), summary, detail=answered)
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        if token is None:
            return _Outcome(
                _code(check), f"{check.what} cannot be read without a token", detail=answered, hint=_TOKEN_HINT
            )
        return _refused(check, answered, gated=False)
    if isinstance(exc, HfHubHTTPError):
        return _Outcome("ON-002", f"could not check {check.what} on the Hub: HTTP {status}", detail=answered)
    return _Outcome(
        "ON-002", f"could not check {check.what}: {endpoint} could not be reached ({type(exc).__name__})"
    )


_TOKEN_HINT = (
    "Request access on the repo's page, then set hf_token_env to the name of an environment variable "
    "holding a token of that account."
)


def _gated_without_token(check: HubRepo) -> _Outcome:
    return _Outcome(
        _code(check),
        f"{check.what} is gated and no token was given (hf_token_env is not set)",
        hint=_TOKEN_HINT,
    )


def _refused(check: HubRepo, answered: str | None, *, gated: bool) -> _Outcome:
    if gated:
        summary = f"{check.what} is gated and the token in {check.token_env} has not been granted access"
    else:
        summary = f"the Hub refused the token in {check.token_env} when checking {check.what}"
    hint = (
        f"Check that {check.token_env} holds a valid token whose account has been granted access to the repo."
    )
    return _Outcome(_code(check), summary, hint=hint, detail=answered)


def _status(exc: Exception) -> int | None:
    response: Any = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None
