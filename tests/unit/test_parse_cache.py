"""The parse cache must never change what validate reports: edits are seen, corruption is ignored."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.engine import validate

GOOD = """apiVersion: ftctl/v1
kind: Model
metadata: {name: m}
spec: {type: huggingface, huggingface_model_name: org/m}
"""


def codes(path: Path) -> list[str]:
    return [d.code for d in validate([str(path)], offline=True, environ={}).diagnostics if d.severity.is_error()]


def test_edit_after_cached_parse_is_seen(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FTCTL_CACHE_DIR", str(tmp_path / "cache"))
    manifest = tmp_path / "m" / "model.yaml"
    manifest.parent.mkdir()
    manifest.write_text(GOOD)
    assert codes(manifest.parent) == []
    assert list((tmp_path / "cache").glob("parse-v1-*.json")), "a clean parse is cached"
    manifest.write_text(GOOD.replace("type: huggingface", "type: hugingface"))
    assert codes(manifest.parent) == ["MD-001"]
    manifest.write_text(GOOD + "extra: 1\n")
    assert codes(manifest.parent) == ["SC-001"]


def test_files_with_problems_are_not_cached(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FTCTL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "dup.yaml").write_text(GOOD + "kind: Model\n")
    assert codes(tmp_path / "m") == ["LD-003"]
    assert codes(tmp_path / "m") == ["LD-003"]  # reported again, from a fresh parse
    for cache in (tmp_path / "cache").glob("*.json"):
        assert json.loads(cache.read_text())["entries"] == {}


def test_corrupt_cache_is_ignored(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FTCTL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.yaml").write_text(GOOD)
    assert codes(tmp_path / "m") == []
    for cache in (tmp_path / "cache").glob("*.json"):
        cache.write_text("{not json")
    assert codes(tmp_path / "m") == []
