"""The parse cache must never change what validate reports: edits are seen, corruption is ignored."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine import validate
from reconciler.manifests import LoadResult, load_paths, loader
from reconciler.manifests import cache as cache_module
from reconciler.manifests.cache import ParseCache

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
    assert list((tmp_path / "cache").glob("parse-v2-*.json")), "a clean parse is cached"
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


# -- stat signatures: unchanged files are not read --------------------------------------------------

LATER_NS = 60 * 10**9  # a clock a minute ahead: every file written by the test is old enough to trust


def _load(folder: Path, cache_file: Path) -> LoadResult:
    cache = ParseCache(cache_file, clock=lambda: time.time_ns() + LATER_NS)
    return load_paths([str(folder)], cache=cache)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The manifest files the loader read (opened), in order."""
    seen: list[str] = []
    real = loader._read_text

    def spy(path: str, *args: Any) -> str | None:
        seen.append(os.path.basename(path))
        return real(path, *args)

    monkeypatch.setattr(loader, "_read_text", spy)
    return seen


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, reads: list[str]) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.yaml").write_text(GOOD)
    first = _load(tmp_path / "m", tmp_path / "cache.json")
    assert reads == ["model.yaml"]
    second = _load(tmp_path / "m", tmp_path / "cache.json")
    assert reads == ["model.yaml"], "the second load answered from the stat signature"
    assert [m.resource for m in second.manifests] == [m.resource for m in first.manifests]


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(tmp_path: Path, reads: list[str]) -> None:
    """ctime changes with every write and no program can set it back: a same-size edit with its
    mtime restored (as `touch -r` or a careless copy would) is read again."""
    manifest = tmp_path / "m" / "model.yaml"
    manifest.parent.mkdir()
    manifest.write_text(GOOD)
    _load(manifest.parent, tmp_path / "cache.json")
    before = manifest.stat()
    time.sleep(0.05)  # past the file system's timestamp tick
    edited = GOOD.replace("org/m", "org/x")
    assert len(edited) == len(GOOD)
    manifest.write_text(edited)
    os.utime(manifest, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (manifest.stat().st_size, manifest.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = _load(manifest.parent, tmp_path / "cache.json")
    assert reads == ["model.yaml", "model.yaml"]
    assert again.manifests[0].resource.spec.huggingface_model_name == "org/x"


def test_a_file_written_just_now_is_not_trusted_by_its_signature(tmp_path: Path, reads: list[str]) -> None:
    """Within the settle time a second write could land in the same timestamp tick: read it."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.yaml").write_text(GOOD)
    for _ in range(2):
        load_paths([str(tmp_path / "m")], cache=ParseCache(tmp_path / "cache.json"))  # the real clock
    assert reads == ["model.yaml", "model.yaml"]


def test_positions_of_an_unread_file_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: list[str]) -> None:
    """A rule's diagnostic in a file the cache answered still gets its line: the text is read then."""
    monkeypatch.setenv("FTCTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache_module, "SETTLE_NS", -LATER_NS)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.yaml").write_text(GOOD + "---\n" + GOOD)  # NM-001 on the second
    runs = [validate([str(tmp_path / "m")], offline=True, environ={}).diagnostics for _ in range(2)]
    assert reads == ["model.yaml"], "the second run did not read it to load it"
    for diagnostics in runs:
        [dup] = [d for d in diagnostics if d.code == "NM-001"]
        assert dup.location is not None and (dup.location.line, dup.location.col) == (8, 12)
    assert runs[0] == runs[1]


def test_damaged_entries_are_misses_not_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid JSON with the wrong shapes inside (a hand edit, another version) is parsed around."""
    monkeypatch.setenv("FTCTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache_module, "SETTLE_NS", -LATER_NS)  # trust every signature: the stat path is taken
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.yaml").write_text(GOOD)
    assert codes(tmp_path / "m") == []
    [cache] = (tmp_path / "cache").glob("parse-v2-*.json")
    data = json.loads(cache.read_text())
    assert data["files"], "the file's signature was remembered"
    for damaged in ({**data, "files": {k: 5 for k in data["files"]}},
                    {**data, "entries": {k: "not a list" for k in data["entries"]}}):
        cache.write_text(json.dumps(damaged))
        assert codes(tmp_path / "m") == []
