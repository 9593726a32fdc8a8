"""A live run saved to one file and read back: model-side experiments without a new live run.

`sim validate --record-live FILE` saves what the live run produced and what was measured on it;
`--replay-live FILE` validates against it (or runs `--power`) in seconds. The file is a NumPy
`.npz` bundle (a zip of named arrays, read without pickle) holding:

* `meta`: JSON — format name and version, the scenario as resolved, the live replication index,
  event loop and wall time, the overhead counts and figures, and the validation it recorded
  (T, limit, verdict, replications, arrivals mode, model overrides), plus a description of every
  array below;
* `records.<column>`: the core's attempt records (`sim.records.COLUMNS`, exact dtypes);
* `events.scheduled_at`, `events.submitted_at`: the load generator's schedule and submissions;
* `arrivals.recorded_at`: arrival times as the core recorded them;
* `deliveries.id`, `deliveries.event`: which event each delivery id carried;
* `requests.<field>`: the endpoint's request log (`RequestRecord`): every field except the
  query and the headers, of which only `x-sim-event` is kept (so no secret is ever saved);
* `overhead.<measure>`: the per-attempt overhead measured on the live run.

Every float is stored exactly, so a replay computes the same T as the live validation did.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.endpoint.server import RequestRecord
from sim.errors import InputError
from sim.records import COLUMNS, Chunk
from sim.report.outputs import json_safe
from sim.scenario.loading import build_scenario
from sim.scenario.model import Scenario
from sim.validation.live import EVENT_HEADER, LiveRun
from sim.validation.overhead import Overhead

if TYPE_CHECKING:
    from sim.validation.result import Validation

FORMAT = "sim-live-run"
VERSION = 1

OVERHEAD_ARRAYS = ("dispatch_lag_s", "client_excess_s", "connect_s", "endpoint_lag_s")
OVERHEAD_COUNTS = ("n_sent", "n_requests", "n_unmatched", "n_orphans")
REQUEST_NUMBERS = ("arrival_at", "body_bytes", "status", "retry_after_s", "queue_wait_s",
                   "service_s", "completed_at", "regime")  # fmt: skip
REQUEST_FLAGS = ("overload", "hang", "unauthorized", "client_gone")
REQUEST_TEXT = ("method", "path", "incidents", "event")

ARRAYS = {
    "records.*": "the core's attempt records, one row per attempt (design §6 columns)",
    "events.scheduled_at": "scheduled arrival time of event i (s since time zero)",
    "events.submitted_at": "when the load generator submitted event i",
    "arrivals.recorded_at": "arrival times as the core recorded them, one per delivery",
    "deliveries.id / deliveries.event": "delivery id -> event index (the x-sim-event value)",
    "requests.*": "the endpoint's request log in arrival order (NaN = none; event = the "
    "x-sim-event header; incidents = comma-separated indices)",
    "overhead.*": "per-attempt overhead measured on the live run, aligned with records (s)",
}


@dataclass
class Recording:
    """A live run read back from its file, with the overhead measured on it at the time."""

    path: Path
    live: LiveRun
    overhead: Overhead
    recorded: dict[str, Any] | None  # the validation the file recorded (T, limit, verdict ...)
    meta: dict[str, Any]


def save_live(
    path: Path, live: LiveRun, overhead: Overhead, validation: Validation | None = None
) -> Path:
    """Write the live run (and, once known, the validation of it) to `path`, atomically."""
    arrays: dict[str, np.ndarray] = {f"records.{k}": np.asarray(v) for k, v in live.records.items()}
    arrays["events.scheduled_at"] = np.asarray(live.scheduled_at, dtype=float)
    arrays["events.submitted_at"] = np.asarray(live.submitted_at, dtype=float)
    arrays["arrivals.recorded_at"] = np.asarray(live.arrival_times, dtype=float)
    arrays["deliveries.id"] = np.fromiter(live.event_of_delivery.keys(), dtype=np.int64)
    arrays["deliveries.event"] = np.fromiter(live.event_of_delivery.values(), dtype=np.int64)
    arrays.update(_request_arrays(live.requests))
    for name in (*OVERHEAD_ARRAYS, "loadgen_lag_s"):
        arrays[f"overhead.{name}"] = np.asarray(getattr(overhead, name), dtype=float)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scenario": plain(live.scenario.resolved()),
        "scenario_source": live.scenario.source,
        "replication": live.replication,
        "loop": live.loop,
        "wall_s": live.wall_s,
        "overhead_counts": {name: getattr(overhead, name) for name in OVERHEAD_COUNTS},
        "overhead_figures": overhead.figures(),
        "validation": None if validation is None else recorded_validation(validation),
        "arrays": ARRAYS,
    }
    arrays["meta"] = np.array(json.dumps(json_safe(meta)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with staging.open("wb") as out:
            np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def recorded_validation(v: Validation) -> dict[str, Any]:
    """What a recording keeps of the validation made with it: enough to check a replay."""
    c = v.comparison
    return {
        "verdict": v.verdict,
        "statistic": c.statistic,
        "critical": c.critical,
        "replications": c.replications,
        "alpha": c.alpha,
        "arrivals": v.arrivals,
        "model_overrides": v.model_overrides,
        "failed": c.failed(),
    }


def _request_arrays(requests: list[RequestRecord]) -> dict[str, np.ndarray]:
    def num(value: Any) -> float:
        return np.nan if value is None else float(value)

    out = {
        f"requests.{name}": np.array([num(getattr(r, name)) for r in requests], dtype=float)
        for name in REQUEST_NUMBERS
    }
    for name in REQUEST_FLAGS:
        out[f"requests.{name}"] = np.array([getattr(r, name) for r in requests], dtype=bool)
    text = {
        "method": [r.method for r in requests],
        "path": [r.path for r in requests],
        "incidents": [",".join(map(str, r.incidents)) for r in requests],
        "event": [r.headers.get(EVENT_HEADER, "") for r in requests],
    }
    for name, values in text.items():
        out[f"requests.{name}"] = np.array(values, dtype=str) if values else np.empty(0, "<U1")
    return out


def load_live(path: Path) -> Recording:
    """Read a file written by `save_live`; anything else is an InputError naming the file."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        problem = "is a directory, not a file" if path.is_dir() else "no such file"
        raise InputError(source, None, problem)
    try:
        with np.load(path, allow_pickle=False) as bundle:
            arrays = {name: bundle[name] for name in bundle.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(source, None, f"not a recorded live run (.npz): {err}") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError):
        raise InputError(source, "meta", "missing or not JSON: not a recorded live run") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(source, "meta.format", f"not a recorded live run (expected {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise InputError(
            source,
            "meta.version",
            f"format version {meta.get('version')!r}; this sim reads version {VERSION}",
        )
    try:
        return _recording(path, meta, arrays)
    except KeyError as err:
        raise InputError(source, str(err.args[0]), "missing from the recording") from None
    except (TypeError, ValueError) as err:
        raise InputError(source, None, f"damaged recording: {err}") from None


def _recording(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Recording:
    source = str(path)
    scenario = build_scenario(meta["scenario"], source=f"{source}: scenario")
    records: Chunk = {
        name: arrays[f"records.{name}"].astype(dtype) for name, dtype in COLUMNS.items()
    }
    n_attempts = records["event_id"].size
    if any(column.shape != (n_attempts,) for column in records.values()):
        raise ValueError("the attempt record columns differ in length")
    scheduled = arrays["events.scheduled_at"]
    live = LiveRun(
        scenario=scenario,
        replication=int(meta["replication"]),
        scheduled_at=scheduled,
        submitted_at=_sized(arrays["events.submitted_at"], scheduled.size, "events"),
        arrival_times=arrays["arrivals.recorded_at"],
        records=records,
        requests=_requests(arrays),
        event_of_delivery=dict(
            zip(
                arrays["deliveries.id"].tolist(),
                _sized(
                    arrays["deliveries.event"], arrays["deliveries.id"].size, "deliveries"
                ).tolist(),
                strict=True,
            )
        ),
        wall_s=float(meta["wall_s"]),
        loop=str(meta["loop"]),
    )
    counts = meta["overhead_counts"]
    per_attempt = {name: arrays[f"overhead.{name}"] for name in OVERHEAD_ARRAYS}
    overhead = Overhead(
        dispatch_lag_s=_sized(per_attempt["dispatch_lag_s"], n_attempts, "overhead"),
        client_excess_s=_sized(per_attempt["client_excess_s"], n_attempts, "overhead"),
        connect_s=_sized(per_attempt["connect_s"], n_attempts, "overhead"),
        endpoint_lag_s=_sized(per_attempt["endpoint_lag_s"], n_attempts, "overhead"),
        loadgen_lag_s=_sized(arrays["overhead.loadgen_lag_s"], scheduled.size, "overhead"),
        n_sent=int(counts["n_sent"]),
        n_requests=int(counts["n_requests"]),
        n_unmatched=int(counts["n_unmatched"]),
        n_orphans=int(counts["n_orphans"]),
    )
    return Recording(path, live, overhead, meta.get("validation"), meta)


def _sized(values: np.ndarray, n: int, what: str) -> np.ndarray:
    if values.shape != (n,):
        raise ValueError(f"the {what} arrays differ in length ({values.shape} against {n})")
    return values


def _requests(arrays: dict[str, np.ndarray]) -> list[RequestRecord]:
    columns = {name: arrays[f"requests.{name}"] for name in (*REQUEST_NUMBERS, *REQUEST_FLAGS)}
    columns.update({name: arrays[f"requests.{name}"] for name in REQUEST_TEXT})
    n = columns["arrival_at"].size
    for column in columns.values():
        _sized(column, n, "requests")
    optional_int = ("status", "retry_after_s", "regime")
    known = {f.name for f in fields(RequestRecord)}
    out = []
    for i in range(n):
        number = {name: float(columns[name][i]) for name in REQUEST_NUMBERS}
        row: dict[str, Any] = {
            name: (None if np.isnan(value) else int(value)) if name in optional_int else value
            for name, value in number.items()
        }
        row["body_bytes"] = int(number["body_bytes"])
        row["completed_at"] = None if np.isnan(number["completed_at"]) else number["completed_at"]
        row.update({name: bool(columns[name][i]) for name in REQUEST_FLAGS})
        event = str(columns["event"][i])
        incidents = str(columns["incidents"][i])
        row.update(
            method=str(columns["method"][i]),
            path=str(columns["path"][i]),
            query={},
            headers={EVENT_HEADER: event} if event else {},
            incidents=tuple(int(x) for x in incidents.split(",")) if incidents else (),
        )
        assert set(row) <= known
        out.append(RequestRecord(**row))
    return out


def check_matches(recording: Recording, scenario: Scenario) -> None:
    """Refuse to replay a recording of another scenario (InputError naming the first difference)."""
    recorded, given = recording.meta["scenario"], plain(scenario.resolved())
    if recorded == given:
        return
    where = _first_difference(recorded, given) or "scenario"
    raise InputError(
        str(recording.path),
        where,
        f"the recorded run differs from {scenario.source} here "
        f"(recorded {_short(_get(recorded, where))}, given {_short(_get(given, where))}); "
        "replay it without a scenario file, or give the scenario it was recorded with",
    )


_MISSING = object()


def plain(data: Any) -> Any:
    """`data` as JSON would give it back (string keys, no NaN): how a recording holds it."""
    return json.loads(json.dumps(json_safe(data)))


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if a.get(key, _MISSING) != b.get(key, _MISSING):
                return _first_difference(
                    a.get(key, _MISSING), b.get(key, _MISSING), f"{prefix}{key}."
                )
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{prefix}{i}.")
    return prefix.rstrip(".") or None


def _get(data: Any, where: str) -> Any:
    for part in where.split("."):
        if isinstance(data, dict):
            data = data.get(part, data.get(int(part)) if part.isdigit() else None)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _short(value: Any) -> str:
    text = "nothing" if value is None or value is _MISSING else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
