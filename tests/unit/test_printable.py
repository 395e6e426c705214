"""Reports never print a control, bidi or invisible character a manifest or store row holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.views.printable import printable

FTCTL = Path(sys.executable).with_name("ftctl")
HIDDEN = ["\x1b", "\u202e", "\u200b", "\u2028", "\x00", "\x07"]


@pytest.mark.parametrize("char", HIDDEN)
def test_hidden_characters_come_out_as_escapes(char: str) -> None:
    shown = printable(f"a{char}b\n\tc")
    assert char not in shown and shown.startswith("a\\") and shown.endswith("b\n\tc")


def test_plain_and_non_latin_text_is_unchanged() -> None:
    for text in ("demo-lora", "Ticketing Actions", "модель", "モデル", "naïve\n"):
        assert printable(text) == text


def test_a_bidi_name_reaches_no_report_raw(tmp_path: Path) -> None:
    (tmp_path / "ftctl.toml").touch()
    name = "exp\u202etroper\u200b"
    (tmp_path / "m.yaml").write_text(
        "apiVersion: ftctl/v1\nkind: Dataset\n"
        f'metadata: {{name: "{name}"}}\nspec: {{type: huggingface, huggingface_name: org/data}}\n', encoding="utf-8")
    outputs = []
    for args in (["validate", "--offline", "m.yaml"], ["validate", "--offline", "--format", "github", "m.yaml"],
                 ["plan", "--offline", "--store", str(tmp_path / "s.db"), "m.yaml"],
                 ["plan", "--offline", "--format", "markdown", "--store", str(tmp_path / "s.db"), "m.yaml"]):
        run = subprocess.run([str(FTCTL), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in run.stderr, run.stderr
        outputs.append(run.stdout + run.stderr)
    text = "".join(outputs)
    assert "NM-007" in text and "exp\\u202etroper\\u200b" in text
    assert "\u202e" not in text and "\u200b" not in text
