"""Diagnostics: what ftctl tells a user about what they wrote.

A `Diagnostic` carries a stable rule code, a severity, a one-line summary, an optional hint, the
source position (`file:line:col`) and the address of the object it concerns. Rules return lists of
them; nothing in the core raises for bad input. Positions may be attached late: rules emit a
`Location` (file, document index, field path) and the loader resolves it to a line and column only
for files that have something to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def is_error(self) -> bool:
        return self is Severity.ERROR


FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    """Where in the sources a diagnostic points: a file, a document in it, a field path, a position."""

    file: str
    doc: int = 0
    path: FieldPath = ()
    line: int = 0  # 1-based; 0 = not resolved yet
    col: int = 0  # 1-based

    def at(self, *path: str | int) -> Location:
        return Location(self.file, self.doc, self.path + path)  # not `replace`: rules call this a lot

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    summary: str
    location: Location | None = None
    address: str | None = None  # "Kind/name"
    hint: str | None = None
    detail: str | None = None

    @property
    def field(self) -> str:
        """The dotted field path the diagnostic is about ('' for the whole document)."""
        if self.location is None:
            return ""
        return dotted(self.location.path)

    def sort_key(self) -> tuple[str, int, int, int, str, str]:
        loc = self.location
        if loc is None:
            return ("", 0, 0, 0, self.code, self.summary)
        return (loc.file, loc.doc, loc.line, loc.col, self.code, self.summary)


def dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
