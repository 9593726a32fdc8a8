"""sim.report.outputs: JSON-safe values, numbers for people, folders written all or nothing."""

import json
import math

import numpy as np
import pytest

from sim.errors import InputError
from sim.report.outputs import json_safe, number, write_folder


def test_json_safe_turns_non_finite_into_null_and_numpy_into_python():
    doc = json_safe({"a": math.nan, "b": [np.float32(1.5), np.int64(3), (math.inf, -math.inf)]})
    assert doc == {"a": None, "b": [1.5, 3, [None, None]]}
    assert type(doc["b"][1]) is int
    json.dumps(doc, allow_nan=False)  # strict JSON


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (None, 4, "–"),
        (math.nan, 4, "–"),
        (math.inf, 4, "∞"),
        (-math.inf, 4, "−∞"),
        (12.0, 4, "12"),
        (np.int64(1234567), 4, "1,234,567"),
        (1234.56, 4, "1,235"),
        (0.0123456, 4, "0.01235"),
        (0.0123456, 3, "0.0123"),
        (True, 4, "True"),
        ("fifo", 4, "fifo"),
    ],
)
def test_number(value, digits, text):
    assert number(value, digits) == text


def test_write_folder_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "reports" / "x"

    def fill(folder):
        (folder / "a.txt").write_text("new")

    assert write_folder(out, fill) == out
    assert (out / "a.txt").read_text() == "new"
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)


def test_write_folder_leaves_nothing_behind_on_error(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "report.md").write_text("old")

    def fill(folder):
        (folder / "half.txt").write_text("half")
        raise ValueError("plot failed")

    with pytest.raises(ValueError):
        write_folder(out, fill)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]
    assert [p.name for p in out.iterdir()] == ["report.md"]


def test_write_folder_never_replaces_a_folder_that_is_not_a_report(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "important.txt").write_text("keep me")
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me too")
    for target, problem in ((precious, "not a report folder"), (a_file, "is not a folder")):
        with pytest.raises(InputError) as err:
            write_folder(target, lambda folder: (folder / "report.md").write_text("new"))
        assert err.value.key == "out_dir" and problem in str(err.value)
    assert (precious / "important.txt").read_text() == "keep me"
    assert a_file.read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "precious"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_folder(empty, lambda folder: (folder / "report.md").write_text("new"))
    assert (empty / "report.md").read_text() == "new"
