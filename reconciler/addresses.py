"""Addresses: the stable `Kind/name` key ftctl tracks every object by.

Pure values; the CLI's `Kind/name` arguments are parsed here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    """`Kind/name`: unique per kind, the key that pairs a manifest with its live object."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> Address:
        kind, _, name = text.partition("/")
        if not kind or not name:
            raise ValueError(f"not an address (want Kind/name): {text!r}")
        return cls(kind, name)
