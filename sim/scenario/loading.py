"""Reading a scenario file: YAML -> `--set` overrides -> a validated `Scenario`, or one clear InputError."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sim.errors import InputError
from sim.scenario.model import LocatedError, Scenario


def load_scenario(
    path: str | Path,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> Scenario:
    """Load, override (`key.path=value` strings or a mapping) and validate a scenario file."""
    path = Path(path)
    data = read_yaml(path)
    return _scenario(data, overrides, str(path), path.parent, default_name=path.stem)


def loads_scenario(
    text: str,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    source: str = "<stdin>",
    base_dir: Path = Path("."),
) -> Scenario:
    """A scenario from YAML text (`sim check -` reads stdin); CSV paths resolve against
    `base_dir`, and the name defaults to `stdin`."""
    data = parse_yaml(text, source)
    return _scenario(data, overrides, source, base_dir, default_name="stdin")


def _scenario(
    data: Any,
    overrides: Iterable[str] | Mapping[str, Any],
    source: str,
    base_dir: Path,
    *,
    default_name: str,
) -> Scenario:
    if not isinstance(data, dict):
        raise InputError(source, None, "a scenario must be a YAML mapping of keys")
    data.setdefault("name", default_name)
    for key, value in _pairs(overrides, source):
        set_path(data, key, value, source=source)
    return build_scenario(data, source=source, base_dir=base_dir)


def with_overrides(scenario: Scenario, overrides: Mapping[str, Any]) -> Scenario:
    """A copy of the scenario with `key.path` values replaced (the `--set` syntax), re-validated."""
    if not overrides:
        return scenario
    data = scenario.model_dump()
    for key, value in overrides.items():
        set_path(data, key, value, source=scenario.source)
    return build_scenario(data, source=scenario.source)


def build_scenario(data: Mapping[str, Any], *, source: str, base_dir: Path = Path(".")) -> Scenario:
    """Validate plain data into a Scenario; relative CSV paths resolve against `base_dir`."""
    try:
        scenario = Scenario.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        raise validation_error(err, source) from None
    scenario._source = source
    return scenario


def read_yaml(path: Path, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """Parse one YAML document, turning every I/O, encoding and syntax problem into an InputError.

    `loader` may be a SafeLoader subclass with more tags (the core config's CloudFormation ones).
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise InputError(str(path), None, "is a directory, not a file") from None
    except UnicodeDecodeError as err:
        raise InputError(str(path), None, f"not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise InputError(str(path), None, err.strerror or str(err)) from None
    return parse_yaml(text, str(path), loader)


def parse_yaml(text: str, source: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """Parse one YAML document; every syntax problem becomes an InputError naming `source`."""
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise InputError(source, None, f"invalid YAML: {where}{problem}") from None
    except RecursionError:
        raise InputError(source, None, "invalid YAML: nested too deeply") from None
    except ValueError as err:  # a date like 2025-13-45, an integer over 4,300 digits
        problem = str(err).split("; use sys.set_int_max_str_digits")[0]
        raise InputError(source, None, f"invalid YAML: {problem}") from None


def validation_error(err: ValidationError, source: str) -> InputError:
    """The first pydantic error as an InputError with a dotted key path (`arrivals.1.start`)."""
    first = err.errors(include_url=False)[0]
    loc = first["loc"]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, LocatedError):  # a model validator naming a key below it
        loc = (*loc, *cause.loc)
    key = ".".join(str(part) for part in _user_loc(loc))
    message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message.replace("Input should be", "must be")
    kind = first["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "union_tag_invalid":
        message = message.replace("Input tag", "kind")
    elif kind == "string_pattern_mismatch":
        message = "must be 1-64 characters of letters, digits, '.', '_' or '-'"
    if kind != "value_error" and not isinstance(first.get("input"), dict | list):
        message = f"{message} (got {_short(first.get('input'))})"
    return InputError(source, key or None, message)


def _user_loc(loc: tuple[Any, ...]) -> list[Any]:
    """Drop pydantic's internal location parts: union tags (`arrivals.0.burst.start`,
    `endpoint.latency.lognormal.p99`) and the `[key]` markers of dict keys."""
    tags = {"constant", "burst", "diurnal", "counts", "trace", "lognormal", "gamma", "empirical"}
    parts: list[Any] = []
    for part in loc:
        tagged_union = parts and (isinstance(parts[-1], int) or parts[-1] == "latency")
        if part == "[key]" or (part in tags and tagged_union):
            continue
        parts.append(part)
    return parts


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _pairs(overrides: Iterable[str] | Mapping[str, Any], source: str) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    pairs = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(source, None, f"--set {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        pairs.append((key.strip(), value))
    return pairs


def set_path(data: dict[str, Any], key: str, value: Any, *, source: str = "overrides") -> None:
    """Set `a.b.0.c` in nested dicts/lists, creating mappings as needed (the `--set` syntax).

    A list item is named by its index, or — for lists of named items such as a bus's
    `destinations` and `rules` — by its `name` (`destinations.partner-a.timeout`; a name with
    dots works too). A part made of digits is always an index.
    """
    parts = key.split(".")
    node: Any = data
    depth = 0
    while depth < len(parts):
        part = parts[depth]
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if part.lstrip("-").isdigit():
                if not -len(node) <= int(part) < len(node):
                    raise InputError(
                        source, where, f"no list item {part} (the list has {len(node)})"
                    )
                index, step = int(part), 1
            else:
                index, step = _named_item(node, parts, depth, source)
            depth += step
            if depth == len(parts):
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            part_key: Any = part
            if part.isdigit() and int(part) in node:
                part_key = int(part)
            depth += 1
            if depth == len(parts):
                node[part_key] = value
            else:
                if node.get(part_key) is None:
                    node[part_key] = {}
                node = node[part_key]
        else:
            raise InputError(source, where, f"cannot set a key inside a {type(node).__name__}")


def _named_item(items: list[Any], parts: list[str], depth: int, source: str) -> tuple[int, int]:
    """(index, number of key parts the name spans) of the list item whose `name` the key gives."""
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    found = [
        (index, span)
        for span in range(1, len(parts) - depth + 1)
        for index, name in enumerate(names)
        if name is not None and str(name) == ".".join(parts[depth : depth + span])
    ]
    where = ".".join(parts[: depth + 1])
    if len(found) == 1:
        return found[0]
    if found:
        matches = ", ".join(".".join(parts[: depth + span]) for _, span in found)
        raise InputError(source, where, f"ambiguous: more than one item matches ({matches})")
    known = [str(n) for n in names if n is not None]
    if not known:
        raise InputError(source, where, "these list items have no names: give an index")
    raise InputError(
        source, where, f"no list item named {parts[depth]!r} (names: {', '.join(known)})"
    )
