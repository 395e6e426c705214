"""Text that is safe to show: control, bidi and invisible characters written as escapes.

Names, paths and values in a report come from manifests and store rows anyone may have written. A
terminal obeys the control characters among them (ANSI escapes can rewrite what was printed), and a
bidi override or a zero-width character makes a line read differently from what it holds (the
"Trojan Source" trick, in a terminal or a pull-request comment). The text views pass their output
through `printable`: such characters come out as `\\u202e`-style escapes; newlines and tabs stay.
Machine formats (JSON, SARIF) keep the characters, escaped by their own encoders where needed.
"""

from __future__ import annotations

import re
import unicodedata

# Cc: control characters; Cf: format (bidi controls, zero-width); Zl/Zp: line/paragraph separators;
# Cs/Co/Cn: surrogates, private use, unassigned.
HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
KEPT = frozenset("\n\t")
# Every character a report might have to escape: all but newline, tab and printable ASCII (which
# `_shown` keeps anyway). Only these go through `_shown`, not each character of a large plan.
SUSPECT = re.compile(r"[^\t\n\x20-\x7e]")


def printable(text: str) -> str:
    return SUSPECT.sub(lambda found: _shown(found.group()), text)


def _shown(char: str) -> str:
    if char in KEPT or unicodedata.category(char) not in HIDDEN:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
