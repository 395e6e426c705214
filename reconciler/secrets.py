"""What counts as a secret, and redacting it: the one place every output asks.

Secrets are named, never written: a config body gives a secret-looking key a reference,
`hub_token: {from_env: HF_TOKEN}`, which the runner replaces with the variable's value at run time
(`runners/jobio.py`). A literal value there is SC-004 (rules/secrets.py). Outputs redact whatever
reaches them anyway (a Studio-written row holding a token): `redact` for values, `redact_text` for
text (JSON or YAML bodies, messages). Pure: no I/O, no environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MASK = "(sensitive)"
# Keys that name a secret's value: a whole word of the key, so `tokenizer` or `max_tokens` are not
# secrets; `*_env` keys (`hf_token_env`) name a variable, and so does a typo of one.
SECRET_KEY = re.compile(r"(?:^|_)(?:token|secret|password|passwd|api_key|apikey|access_key|credentials?)(?:$|_)")
REFERENCE_KEY = "from_env"
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Strings that are credentials whatever key holds them (Hugging Face, GitHub, OpenAI-style, Slack,
# AWS access key ids, JWTs).
TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|sk-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
# scheme://user[:password]@ — the userinfo part of a URL.
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#'\"]+@")
# `key: value` / `"key": "value"` / `key=value` in text (JSON, YAML block or flow, env lines); a value
# that opens a mapping (a reference) is left alone, and a value never runs past its line. Only keys
# with a secret word are matched, so another pair never swallows one.
_PAIR = re.compile(
    r"""(?i)(?P<key>["']?[a-z0-9_.-]*(?:token|secret|passw(?:or)?d|api_?key|access_?key|credentials?)[a-z0-9_.-]*["']?)"""
    r"""(?P<sep>[ \t]*[:=][ \t]*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,{}\[\]#"'][^\n,}\]#]*)"""
)
# Cheap test before the regexes above: text with none of these holds nothing to redact.
_HINT = re.compile(r"(?i)token|secret|passw|api_?key|access_?key|credential|@|hf_|gh[pousr]_|github_pat_|sk-|xox|akia|eyj")


def is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    lower = key.lower()
    return bool(SECRET_KEY.search(lower)) and "env" not in lower


def is_reference(value: object) -> bool:
    """`{from_env: NAME}`: a secret named, resolved from the job's environment at run time."""
    return (isinstance(value, dict) and len(value) == 1 and isinstance(value.get(REFERENCE_KEY), str)
            and is_variable_name(value[REFERENCE_KEY]))


def is_variable_name(text: str) -> bool:
    return bool(VARIABLE_NAME.fullmatch(text)) and not TOKEN.search(text)


def is_literal_secret(key: object, value: object) -> bool:
    """A value written under a secret-looking key (not empty, not a reference, not already masked)."""
    return is_secret_key(key) and value not in (None, "", MASK) and not is_reference(value)


def mask_userinfo(text: str) -> str:
    return USERINFO.sub(r"\1***@", text)


def redact(value: Any) -> Any:
    """The value with every literal secret masked: under secret-looking keys at any depth, in text."""
    if isinstance(value, dict):
        return {k: MASK if is_literal_secret(k, v) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Text with secret-looking `key: value` pairs, URL userinfo and token-like strings masked."""
    if not _HINT.search(text):
        return text
    text = _PAIR.sub(_masked_pair, text)
    return TOKEN.sub(MASK, mask_userinfo(text))


def _masked_pair(match: re.Match[str]) -> str:
    key, value = match["key"].strip("\"'"), match["value"]
    if not is_secret_key(key) or value.strip("\"' \t") in ("", MASK, "null", "~"):
        return match[0]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{match['sep']}{quote}{MASK}{quote}"


def holds_secret(value: Any) -> bool:
    """True when `redact` would change the value: a literal secret, a URL with userinfo, a token."""
    if isinstance(value, dict):
        return any(is_literal_secret(k, v) or holds_secret(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_secret(v) for v in value)
    return isinstance(value, str) and bool(_HINT.search(value)) and redact_text(value) != value


def literal_secrets(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Paths of the keys that hold a literal secret, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if is_literal_secret(key, item):
                yield (*path, key)
            else:
                yield from literal_secrets(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from literal_secrets(item, (*path, index))


def urls_with_userinfo(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, the URL text with its userinfo masked) for each string holding a URL with credentials."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from urls_with_userinfo(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from urls_with_userinfo(item, (*path, index))
    elif isinstance(value, str) and USERINFO.search(value):
        yield path, mask_userinfo(value)


def references(value: Any) -> set[str]:
    """The variable names of every `{from_env: NAME}` reference, at any depth."""
    if is_reference(value):
        return {value[REFERENCE_KEY]}
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()


def with_placeholders(value: Any) -> Any:
    """References replaced by a placeholder string: what a schema that types the key as text accepts."""
    if is_reference(value):
        return f"${{{value[REFERENCE_KEY]}}}"
    if isinstance(value, dict):
        return {k: with_placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_placeholders(v) for v in value]
    return value
