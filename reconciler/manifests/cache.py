"""A per-file parse cache: YAML text that parsed cleanly is stored as JSON, keyed by a hash of its
content, so an unchanged file is never parsed twice (json.loads is ~15x faster than YAML here).

Content-keyed, so `git checkout` or a fresh clone with old contents still hits. On top of that, as
git's index does, each file's stat signature (device, inode, size, mtime, ctime) remembers which
content it held, so a file whose signature is unchanged is not even read. ctime cannot be set by a
program and changes with every write, and a signature is only remembered once the file is a few
seconds old (a write within the same timestamp tick would not change it), so an edit is never
missed. Only clean parses are cached: a file with any problem is re-read every time (it needs
positions anyway). One cache file per set of input paths, holding only the entries the last run
used, so it never grows past the project. A corrupt or unreadable cache is ignored; writing is
atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler.secrets import holds_secret

FORMAT = 2
# A file changed less than this long ago may change again within the same timestamp tick (2 s on
# FAT, 1 s on some network file systems): its stat signature is not remembered yet.
SETTLE_NS = 3_000_000_000


def default_dir() -> Path:
    if os.environ.get("FTCTL_CACHE_DIR"):
        return Path(os.environ["FTCTL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ftctl"


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def signature(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


class ParseCache:
    def __init__(self, path: Path, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self.clock = clock
        self._entries: dict[str, list[Any]] = {}
        self._used: dict[str, list[Any]] = {}
        self._files: dict[str, list[Any]] = {}  # file path -> [*signature, content key]
        self._files_used: dict[str, list[Any]] = {}
        self._dirty = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == FORMAT and isinstance(data.get("entries"), dict) and isinstance(data.get("files"), dict):
                self._entries, self._files = data["entries"], data["files"]
        except (OSError, ValueError, AttributeError):
            pass

    @classmethod
    def for_inputs(cls, paths: Sequence[str], folder: Path | None = None) -> ParseCache:
        key = hashlib.blake2b("\0".join(sorted(os.path.abspath(p) for p in paths)).encode(), digest_size=8)
        return cls((folder or default_dir()) / f"parse-v{FORMAT}-{key.hexdigest()}.json")

    def unchanged(self, file: str, stat: os.stat_result) -> list[Any] | None:
        """The documents of a file whose stat signature is the one remembered, without reading it."""
        known = self._files.get(file)
        if not isinstance(known, list) or known[:-1] != signature(stat):  # a damaged entry is a miss
            return None
        docs = self.get(str(known[-1]))
        if docs is not None:
            self._files_used[file] = known
        return docs

    def remember(self, file: str, stat: os.stat_result, key: str) -> None:
        """Note which content a file held (after `put`), once it is old enough to be trusted."""
        if key not in self._used or stat.st_ctime_ns > self.clock() - SETTLE_NS:
            return
        entry = [*signature(stat), key]
        if self._files.get(file) != entry:
            self._dirty = True
        self._files_used[file] = entry

    def get(self, key: str) -> list[Any] | None:
        docs = self._entries.get(key)
        if not isinstance(docs, list):  # missing, or damaged: parse the file again
            return None
        self._used[key] = docs
        return docs

    def put(self, key: str, docs: list[Any]) -> None:
        if holds_secret(docs):  # a secret written into a manifest (SC-004), a URL with credentials: never copied to disk
            return
        self._used[key] = docs
        self._dirty = True

    def save(self) -> None:
        """Keep only what this run used; write only when that differs from what was read."""
        if not self._dirty and len(self._used) == len(self._entries) and len(self._files_used) == len(self._files):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".parse-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({"format": FORMAT, "entries": self._used, "files": self._files_used}, separators=(",", ":")))  # C encoder
            os.replace(tmp, self.path)
        except (OSError, ValueError, RecursionError):
            pass  # a cache that cannot be written only costs speed

