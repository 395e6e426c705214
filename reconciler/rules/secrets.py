"""Secret rules: a secret is named, never written (SC-004).

A literal value under a secret-looking key anywhere in a spec (config bodies, JSON or axolotl YAML
text included, at any depth), a URL carrying credentials (`https://user:TOKEN@host/`), and a
`hf_token_env` that holds something other than a variable name are errors, so no plan, store row or
job input ever carries them. The message names the key and never echoes the value (a URL is shown
with its userinfo masked). What counts as a secret is `reconciler.secrets`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from reconciler.catalog import make_diag
from reconciler.diagnostics import Diagnostic, FieldPath
from reconciler.manifests.loader import Manifest
from reconciler.models import Config
from reconciler.rules.configs import parse_body
from reconciler.rules.context import RuleContext
from reconciler.secrets import (
    REFERENCE_KEY,
    TOKEN,
    USERINFO,
    is_literal_secret,
    is_variable_name,
    literal_secrets,
    urls_with_userinfo,
)

TOKEN_ENV = "hf_token_env"
HOW = f"give a reference instead, e.g. {{{REFERENCE_KEY}: HF_TOKEN}}, and set that variable where the job runs"


def check_secrets(ctx: RuleContext) -> Iterator[Diagnostic]:
    for m in ctx.manifests:
        spec = _plain(m.resource.spec)
        if isinstance(m.resource, Config) and isinstance(m.resource.spec.config, str):
            body, _, _ = parse_body(m.resource.spec.type or "", m.resource.spec.config)
            yield from _in_text_body(m, body)
        if _suspect(spec):  # nearly every manifest: none of the walks below would find anything
            yield from _literals(m, spec)
            yield from _token_envs(m, spec, ("spec",))


def _literals(m: Manifest, spec: Any) -> Iterator[Diagnostic]:
    for path in literal_secrets(spec, ("spec",)):
        yield make_diag("SC-004", f"{_dotted(path)} holds a secret written into the manifest; {HOW}",
                        location=m.at(*path), address=m.address)
    for path, masked in urls_with_userinfo(spec, ("spec",)):
        yield make_diag("SC-004", f"{_dotted(path)} holds a URL with credentials ({masked}); keep them out of the "
                        "manifest (an environment variable the job reads, or a credential helper)", location=m.at(*path), address=m.address)


def _in_text_body(m: Manifest, body: dict[str, Any] | None) -> Iterator[Diagnostic]:
    """A body written as JSON or YAML text: positions stop at the text, the message names the key."""
    path: FieldPath = ("spec", "config")
    for inner in literal_secrets(body or {}):
        yield make_diag("SC-004", f"spec.config (text) key {_dotted(inner)} holds a secret written into the manifest; {HOW}",
                        location=m.at(*path), address=m.address)


def _token_envs(m: Manifest, value: Any, path: FieldPath) -> Iterator[Diagnostic]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == TOKEN_ENV and isinstance(item, str) and item and not is_variable_name(item):
                what = "holds what looks like a token, not" if TOKEN.search(item) else "is not"
                yield make_diag("SC-004", f"{_dotted((*path, key))} {what} a variable name; put the token in an "
                                "environment variable and name that variable here", location=m.at(*path, key),
                                address=m.address)
            else:
                yield from _token_envs(m, item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _token_envs(m, item, (*path, index))


def _suspect(value: Any) -> bool:
    """Whether `_literals` or `_token_envs` may report something (the same walk, without paths): a
    key holding a literal secret, a text with a URL's userinfo, a `hf_token_env` key."""
    if isinstance(value, dict):
        return any(key == TOKEN_ENV or is_literal_secret(key, item) or _suspect(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_suspect(item) for item in value)
    return isinstance(value, str) and bool(USERINFO.search(value))


def _plain(value: Any) -> Any:
    """A spec as plain values, field by field as written (unset fields left out)."""
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in value.model_fields_set}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
