"""Reading files that manifests name, and the manifests themselves, without trusting them.

Owns the project root (`project_root`) and the one way ftctl reads such a file (`ReadRoots`): the
target, after symlinks, must lie inside the project root or an allowed extra read root, must be a
regular file (never a FIFO, device or socket: it is stat-ed before it is opened, opened with
O_NONBLOCK and O_NOFOLLOW, and the open descriptor is checked again), and at most `limit` bytes are
read whatever its size claims. Anything else raises `UnsafePathError` carrying a catalog code and a
message that names the path and why; nothing of such a file is read. Callers (the manifest loader,
`localfiles`) turn it into a diagnostic. Used by the engine, which decides the roots; never
writes.
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

PROJECT_MARKERS = ("ftctl.toml", ".git")  # in order: the nearest folder holding the first that exists wins
READ_ROOTS_ENV = "FTCTL_READ_ROOTS"
OUTSIDE, NOT_REGULAR, TOO_LARGE = "LD-014", "LD-015", "LD-016"
_KINDS = ((st.S_ISDIR, "a folder"), (st.S_ISFIFO, "a FIFO (named pipe)"), (st.S_ISCHR, "a character device"),
          (st.S_ISBLK, "a block device"), (st.S_ISSOCK, "a socket"))


class UnsafePathError(Exception):
    """A path ftctl refuses to read: `code` is a catalog code, the message names the path and why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def project_root(paths: Sequence[str]) -> str:
    """The nearest ancestor of the paths' common folder (files count by their folder) that holds
    ftctl.toml, else one that holds .git, else that common folder itself; a real path."""
    folders = [os.path.realpath(p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))) for p in paths]
    common = os.path.commonpath(folders) if folders else os.path.realpath(os.getcwd())
    for marker in PROJECT_MARKERS:
        folder = common
        while True:
            if os.path.exists(os.path.join(folder, marker)):
                return folder
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return common


def extra_roots(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Absolute folders from FTCTL_READ_ROOTS (os.pathsep-separated; ftctl.toml's `read_roots`
    arrives here too). A relative entry raises ValueError: it would depend on the working folder."""
    entries = [e for e in environ.get(READ_ROOTS_ENV, "").split(os.pathsep) if e.strip()]
    relative = [e for e in entries if not os.path.isabs(e)]
    if relative:
        raise ValueError(f"{READ_ROOTS_ENV}: {', '.join(relative)} is not an absolute folder")
    return tuple(entries)


@dataclass(frozen=True)
class ReadRoots:
    """The folders ftctl may read below: the project root first, then the extra read roots."""

    roots: tuple[str, ...]
    _real_dirs: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # folder -> realpath

    @classmethod
    def of(cls, root: str, extra: Iterable[str] = ()) -> ReadRoots:
        return cls(tuple(os.path.realpath(r) for r in (root, *extra)))

    @classmethod
    def for_paths(cls, paths: Sequence[str], environ: Mapping[str, str] | None = None) -> ReadRoots:
        return cls.of(project_root(paths), extra_roots(os.environ if environ is None else environ))

    def inspect_file(self, path: str) -> tuple[str, os.stat_result]:
        """(real path, stat) of a regular file inside the roots. One lstat for a file that is not a
        symlink (folders' real paths are remembered); OSError when it does not exist."""
        folder, name = os.path.split(os.path.abspath(path))
        real = os.path.join(self._real_dir(folder), name)
        info = os.lstat(real)
        if st.S_ISLNK(info.st_mode):
            real = os.path.realpath(real)
            info = os.stat(real)
        self._check_inside(path, real)
        _check_regular(path, info)
        return real, info

    def inspect_dir(self, path: str) -> str:
        """The real path of `path` when it lies inside the roots (whether or not it exists)."""
        real = os.path.realpath(path)
        self._check_inside(path, real)
        return real

    def read(self, path: str, *, limit: int, head: bool = False) -> bytes:
        """The bytes of a regular file inside the roots; past `limit` bytes, UnsafePathError
        (`head`: the first `limit` bytes instead)."""
        real, info = self.inspect_file(path)
        return read_checked(path, real, info, limit=limit, head=head)

    def _real_dir(self, folder: str) -> str:
        real = self._real_dirs.get(folder)
        if real is None:
            real = self._real_dirs[folder] = os.path.realpath(folder)
        return real

    def _check_inside(self, path: str, real: str) -> None:
        if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots):
            raise UnsafePathError(OUTSIDE, f"{path} resolves to {real}, outside the project root {self.roots[0]}"
                                  + (f" and the read roots {', '.join(self.roots[1:])}" if self.roots[1:] else ""))


def read_checked(path: str, real: str, info: os.stat_result, *, limit: int, head: bool = False) -> bytes:
    """Read a file `inspect_file` answered (`real`, `info`): opened without following a symlink or
    blocking, the descriptor must still be that regular file; at most `limit` bytes (+1 to tell)."""
    if info.st_size > limit and not head:
        raise _too_large(path, limit)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        _check_regular(path, opened)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise UnsafePathError(NOT_REGULAR, f"{path} changed while it was being opened")
        want = limit if head else limit + 1
        chunks: list[bytes] = []
        while want > 0 and (chunk := os.read(fd, min(want, 1 << 20))):
            chunks.append(chunk)
            want -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise _too_large(path, limit)
    return data


def _check_regular(path: str, info: os.stat_result) -> None:
    if not st.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "of an unusual kind")
        raise UnsafePathError(NOT_REGULAR, f"{path} is {kind}, not a regular file")


def _too_large(path: str, limit: int) -> UnsafePathError:
    return UnsafePathError(TOO_LARGE, f"{path} is larger than {limit:,} bytes, the most ftctl reads of it")
