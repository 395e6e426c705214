"""How output looks on the screen it goes to: colour, and the display `apply --wait` keeps up to date.

The CLI decides once per run what the screen is (`Screen`, from `screen_of`: a terminal or not, colour
or not) from its streams and environment; views render plain text, which is the contract (pipes,
files and goldens get exactly it), and `paint` colours a text view's state words only when the screen
takes colour. `WaitDisplay` shows each job of `apply --wait` (step/total, loss, ETA, as the plan
observed them) redrawn in place on a terminal, and as lines, each when it changes, everywhere else.
rich is imported only where colour or a live display is used: `ftctl --help` and piped commands never
load it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

# State words of status, get, drift and plan text, and the colour each is shown in.
STYLES = {"synced": "green", "healthy": "green", "succeeded": "green", "running": "cyan", "queued": "cyan",
          "pending": "cyan", "waiting": "cyan", "out of sync": "yellow", "drifted": "yellow", "missing": "yellow",
          "orphaned": "yellow", "unknown": "yellow", "failed": "bold red", "error": "bold red", "blocked": "bold red"}
_WORDS = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in sorted(STYLES, key=len, reverse=True)) + r")(?![\w-])")
ACTIVE = ("running", "queued")  # a job in one of these states keeps running when ftctl stops waiting


@dataclass(frozen=True)
class Screen:
    """Where the output goes: a terminal (live display) or not, and whether it takes colour."""

    terminal: bool
    color: bool


def screen_of(*, terminal: bool, environ: Mapping[str, str]) -> Screen:
    """Colour never with NO_COLOR set (any value, https://no-color.org; `ftctl --no-color` sets it);
    always with FORCE_COLOR; otherwise on a terminal that is not TERM=dumb."""
    if environ.get("NO_COLOR"):
        return Screen(terminal, False)
    if environ.get("FORCE_COLOR"):
        return Screen(terminal, True)
    return Screen(terminal, terminal and environ.get("TERM") != "dumb")


def paint(text: str, screen: Screen) -> str:
    """`text` with its state words coloured (ANSI escapes) when the screen takes colour; else as it is."""
    if not screen.color or not _WORDS.search(text):
        return text
    from rich.console import Console
    from rich.text import Text

    shown = Text(text)
    for match in _WORDS.finditer(text):
        shown.stylize(STYLES[match.group()], match.start(), match.end())
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, no_color=False, color_system="standard", soft_wrap=True, highlight=False,
            markup=False, emoji=False).print(shown, end="")
    return buffer.getvalue()


def keeps_running(line: str) -> bool:
    """Whether a job line (`views.job_lines`) is of a job that goes on without ftctl."""
    return line.startswith(ACTIVE)


class WaitDisplay:
    """The jobs of `apply --wait`: `update` with the latest (address, line) pairs of a round. On a
    terminal (both output streams: other output is shown above the display) they are redrawn in
    place, else printed as lines, each when it changes."""

    def __init__(self, stream: TextIO, screen: Screen) -> None:
        self.stream, self.screen = stream, screen
        self.lines: dict[str, str] = {}
        self._live: Any = None

    def __enter__(self) -> WaitDisplay:
        self.resume()
        return self

    def __exit__(self, *_: object) -> None:
        self.pause()

    def update(self, pairs: Sequence[tuple[str, str]], *, quiet: bool = False) -> None:
        """The jobs' latest lines; `quiet`: noted (redrawn on a terminal), not printed as lines."""
        changed = [(address, line) for address, line in pairs if self.lines.get(address) != line]
        self.lines.update(pairs)
        if self._live is not None:
            self._live.update(self._grid(), refresh=True)
            return
        for address, line in [] if quiet else changed:
            print(f"  {address}: {line}", file=self.stream, flush=True)

    def running(self) -> list[tuple[str, str]]:
        """The jobs last seen running or queued: they keep running when ftctl stops waiting."""
        return [(address, line) for address, line in self.lines.items() if keeps_running(line)]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Plain output (a plan, a question) between redraws."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def resume(self) -> None:
        if not self.screen.terminal or self._live is not None:
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream, force_terminal=True, no_color=not self.screen.color, highlight=False)
        self._live = Live(self._grid(), console=console, refresh_per_second=4, transient=False,
                          redirect_stdout=True, redirect_stderr=True)  # what else is printed shows above the display
        self._live.start()

    def pause(self) -> None:
        """Stop redrawing; what it showed last stays on the screen."""
        if self._live is None:
            return
        self._live.stop()
        self._live = None

    def _grid(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        for address, line in self.lines.items():
            mark = Spinner("dots", style="cyan") if keeps_running(line) else Text(_mark(line))
            grid.add_row(mark, Text(address, style="bold"), Text.from_ansi(paint(line, self.screen)))
        return grid


def _mark(line: str) -> str:
    return "✓" if line.startswith("succeeded") else "✗" if line.startswith("failed") else "·"
