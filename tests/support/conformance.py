"""The EventBridge conformance vectors, vendored in tests/conformance (Apache-2.0; see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"


def rows(name: str, known_differences: dict[str, str]) -> list[Any]:
    """One pytest.param per row of a jsonl file, id'd by its `id`; known differences xfail strictly."""
    params = []
    for line in (CONFORMANCE / name).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        marks = []
        if row["id"] in known_differences:
            marks.append(pytest.mark.xfail(strict=True, reason=known_differences[row["id"]]))
        params.append(pytest.param(row, marks=marks, id=row["id"]))
    return params
