"""reconciler.secrets: what counts as a secret, and redaction of values and text."""

from __future__ import annotations

import pytest

from reconciler.plan import FieldDiff
from reconciler.secrets import (
    MASK,
    holds_secret,
    is_reference,
    is_variable_name,
    literal_secrets,
    redact,
    redact_text,
    references,
    urls_with_userinfo,
    with_placeholders,
)

TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWx12"


def test_nested_secret_keys_are_masked_case_insensitively() -> None:
    body = {"hub_token": "abc", "nested": {"API_KEY": "k", "list": [{"Password": "p", "name": "n"}]}}
    assert redact(body) == {"hub_token": MASK, "nested": {"API_KEY": MASK, "list": [{"Password": MASK, "name": "n"}]}}


def test_non_secret_keys_references_and_empty_values_are_untouched() -> None:
    body = {"max_tokens": 5, "tokenizer": "t", "hf_token_env": "HF_TOKEN", "hub_token": {"from_env": "HF_TOKEN"},
            "api_key": None, "password": "", "learning_rate": 1e-4}
    assert redact(body) == body
    assert not holds_secret(body)


def test_token_like_strings_are_masked_under_any_key() -> None:
    assert redact({"description": f"uses {TOKEN} for now"}) == {"description": f"uses {MASK} for now"}
    assert holds_secret([f"{TOKEN}"])


@pytest.mark.parametrize(("text", "expected"), [
    ('{"hub_token": "abc def", "lr": 1}', '{"hub_token": "(sensitive)", "lr": 1}'),
    ("base_model: x\nwandb_api_key: abc123\nmax_tokens: 5\n", "base_model: x\nwandb_api_key: (sensitive)\nmax_tokens: 5\n"),
    ("{api_key: 'abc', n: 1}", "{api_key: '(sensitive)', n: 1}"),
    ("hub_token: {from_env: HF_TOKEN}", "hub_token: {from_env: HF_TOKEN}"),
    ("see https://user:pw@example.com/x", "see https://***@example.com/x"),
    ("hf_token_env: HF_TOKEN", "hf_token_env: HF_TOKEN"),
])
def test_text_bodies_and_messages_are_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_a_json_column_redacted_as_text_stays_json() -> None:
    import json

    assert json.loads(redact_text(json.dumps({"credentials": "x", "a": [1, 2]}))) == {"credentials": MASK, "a": [1, 2]}


def test_references_are_variable_names_only() -> None:
    assert is_reference({"from_env": "HF_TOKEN"})
    assert not is_reference({"from_env": TOKEN})  # a token where a name belongs is a literal
    assert not is_reference({"from_env": "HF_TOKEN", "x": 1})
    assert is_variable_name("HUGGINGFACE_ACCESS_TOKEN") and not is_variable_name(TOKEN) and not is_variable_name("a b")


def test_literal_secrets_and_urls_are_found_by_path() -> None:
    spec = {"config": {"a": [{"api_key": "x"}], "hub_token": {"from_env": "T"}}, "location": "https://u:p@h/x"}
    assert list(literal_secrets(spec, ("spec",))) == [("spec", "config", "a", 0, "api_key")]
    assert list(urls_with_userinfo(spec)) == [(("location",), "https://***@h/x")]
    assert references(spec) == {"T"}
    assert with_placeholders(spec)["config"]["hub_token"] == "${T}"


def test_a_field_diff_never_holds_the_value() -> None:
    diff = FieldDiff("configs.config", '{"hub_token": "old-secret"}', '{"hub_token": {"from_env": "T"}}')
    assert diff.sensitive and "old-secret" not in repr(diff)
    assert FieldDiff("configs.config.hub_token", MASK, "x").sensitive
    assert not FieldDiff("models.name", "a", "b").sensitive
