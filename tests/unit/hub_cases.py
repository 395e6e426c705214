"""What the online Hub tests share: the fake Hub fixture (`hub`), the process's Hub settings
(`hub_process_env`: a module asks for it with `pytestmark`), and small Hugging Face Dataset/Model
manifests loaded from a file (tests/unit/test_online_hub*.py). A pytest plugin of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.manifests import LoadResult, load_paths
from tests.fakes.hub_server import FakeHub

SECRET = "hf_secretTOKENvalue123"


@pytest.fixture
def hub_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the process had when huggingface_hub was imported: online, no telemetry, and an
    ambient token that must never be sent (only the token hf_token_env names is)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_ambientTOKEN")


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        yield fake


def dataset(name: str, repo: str, token_env: str | None = None) -> str:
    extra = f"  hf_token_env: {token_env}\n" if token_env else ""
    return (
        f"apiVersion: ftctl/v1\nkind: Dataset\nmetadata:\n  name: {name}\n"
        f"spec:\n  type: huggingface\n  huggingface_name: {repo}\n{extra}"
    )


def model(name: str, repo: str, token_env: str | None = None) -> str:
    extra = f"  hf_token_env: {token_env}\n" if token_env else ""
    return (
        f"apiVersion: ftctl/v1\nkind: Model\nmetadata:\n  name: {name}\n"
        f"spec:\n  type: huggingface\n  huggingface_model_name: {repo}\n{extra}"
    )


def load(tmp_path: Path, *docs: str) -> LoadResult:
    path = tmp_path / "hub.yaml"
    path.write_text("---\n".join(docs))
    result = load_paths([str(path)])
    assert result.diagnostics == []
    return result
