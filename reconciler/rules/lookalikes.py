"""Names that look alike: invisible characters, unnormalised forms and homoglyphs.

Pure helpers for the name rules (NM-007, NM-008). A name's *skeleton* is what a reader sees: its
NFKC form with format characters (bidi controls, zero-width joiners) removed and the common
Cyrillic and Greek look-alikes of Latin letters replaced by those letters (a small table in the
spirit of Unicode's confusables, TR39, limited to the scripts a name plausibly mixes with ASCII).
Two different names with one skeleton are confusable.
"""

from __future__ import annotations

import unicodedata

# Cyrillic and Greek letters drawn like a Latin letter in common fonts -> that letter.
HOMOGLYPHS: dict[str, str] = {
    **dict(zip("аеорсухіјѕԁһԛԝӏ", "aeopcyxijsdhqwl", strict=True)),  # Cyrillic small
    **dict(zip("АВЕКМНОРСТХУІЈЅ", "ABEKMHOPCTXYIJS", strict=True)),  # Cyrillic capital
    **dict(zip("αορνικυ", "aopviku", strict=True)),  # Greek small
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),  # Greek capital
}


def hidden_characters(name: str) -> list[str]:
    """The invisible format characters in a name (bidi overrides, zero-width spaces...), as U+XXXX."""
    return [f"U+{ord(c):04X}" for c in name if unicodedata.category(c) == "Cf"]


def is_normalised(name: str) -> bool:
    return unicodedata.is_normalized("NFC", name)


def skeleton(name: str) -> str:
    """What the name looks like: equal skeletons read as the same name."""
    visible = "".join(c for c in unicodedata.normalize("NFKC", name) if unicodedata.category(c) != "Cf")
    return "".join(HOMOGLYPHS.get(c, c) for c in visible)
