"""Stub train runner (see _stub.py): the job contract without the ML work."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stub import main

main("train")
