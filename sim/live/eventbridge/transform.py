"""EventBridge target input shaping: Input, InputPath and InputTransformer.

``render_input`` returns the exact body text a target receives, or ``None`` when
EventBridge delivers nothing (a JSON template whose output is not valid JSON). The
rules mirror the AWS-recorded vectors in ``tests/conformance/input-*.jsonl``:

* a template starting with ``{`` is a *JSON template*; anything else (usually a quoted
  JSON string) is a *string template* and is delivered as-is, quotes included;
* strings go in raw inside quotes and string templates, and get quotes added when a
  placeholder stands bare in a JSON template;
* objects/arrays go in as JSON in a JSON template, and as JSON with every ``"`` removed
  in a string template (``{acc_id:0a78,sf_id:baz}``, ``[ACTIVE,INACTIVE]``);
* a path missing from the event gives an empty string (``""`` when bare in JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "InputSpec",
    "InvalidInputConfig",
    "TargetContext",
    "render_input",
    "resolve_path",
    "validate_input_config",
]

PREDEFINED = (
    "aws.events.rule-arn",
    "aws.events.rule-name",
    "aws.events.event.ingestion-time",
    "aws.events.event",
    "aws.events.event.json",
)
MAX_PATHS = 100
_SETTINGS = ("Input", "InputPath", "InputTransformer")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
_MAP_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+|\*)\]")
_ENVELOPE = {  # <aws.events.event>: key in the output -> key in the event (no detail)
    "id": "id", "account": "account", "detailType": "detail-type", "time": "time",
    "source": "source", "region": "region", "resources": "resources", "version": "version",
}  # fmt: skip
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


class InvalidInputConfig(ValueError):
    """A target input configuration that PutTargets rejects (ValidationException)."""


@dataclass(frozen=True)
class TargetContext:
    """Per-delivery values behind the predefined ``<aws.events.*>`` placeholders."""

    rule_arn: str
    rule_name: str
    ingestion_time: datetime | str


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parse_path(path: str) -> list[str | int | None] | None:
    """``$``, ``$.a.b``, ``$.a[0]``, ``$.a[*]`` -> steps (None = every element)."""
    if not path.startswith("$"):
        return None
    steps: list[str | int | None] = []
    pos = 1
    while pos < len(path):
        match = _PATH_STEP.match(path, pos)
        if match is None:
            return None
        name, index = match.groups()
        steps.append(name if name is not None else None if index == "*" else int(index))
        pos = match.end()
    return steps


def resolve_path(event: Any, path: str) -> Any:
    """Value at a JSONPath (subset) in the event, or ``MISSING``; ``[*]`` yields a list."""
    steps = _parse_path(path)
    if steps is None:
        raise InvalidInputConfig(f"Unsupported JSONPath: {path}")
    nodes, fan_out = [event], False
    for step in steps:
        found = []
        for node in nodes:
            if step is None and isinstance(node, list):
                found.extend(node)
            elif isinstance(step, int) and isinstance(node, list) and step < len(node):
                found.append(node[step])
            elif isinstance(step, str) and isinstance(node, dict) and step in node:
                found.append(node[step])
        nodes, fan_out = found, fan_out or step is None
    if fan_out:
        return nodes
    return nodes[0] if nodes else MISSING


@dataclass(frozen=True)
class InputSpec:
    """A validated target input setting (at most one of the three is set)."""

    input: str | None = None
    input_path: str | None = None
    paths_map: Mapping[str, str] | None = None
    template: str | None = None

    @classmethod
    def from_target(cls, target: Mapping[str, Any]) -> InputSpec:
        """Validate a PutTargets-style target dict (``Id``, ``Input``, ``InputPath``, ...)."""
        target_id = target.get("Id", "")
        chosen = [k for k in _SETTINGS if target.get(k) is not None]
        if len(chosen) > 1:
            raise InvalidInputConfig(
                f"Only one of Input, InputPath, or InputTransformer must be provided "
                f"for target {target_id}."
            )
        if "Input" in chosen:
            try:
                json.loads(target["Input"])
            except (TypeError, ValueError):
                message = f"Input for target {target_id} is not valid JSON."
                raise InvalidInputConfig(message) from None
            return cls(input=target["Input"])
        if "InputPath" in chosen:
            if _parse_path(target["InputPath"]) is None:
                raise InvalidInputConfig(f"InputPath for target {target_id} is not valid JSONPath.")
            return cls(input_path=target["InputPath"])
        if "InputTransformer" in chosen:
            return cls._transformer(target["InputTransformer"], target_id)
        return cls()

    @classmethod
    def _transformer(cls, transformer: Mapping[str, Any], target_id: str) -> InputSpec:
        template = transformer.get("InputTemplate")
        paths = dict(transformer.get("InputPathsMap") or {})
        if not isinstance(template, str) or not template:
            raise InvalidInputConfig(f"InputTemplate for target {target_id} is required.")
        if len(paths) > MAX_PATHS:
            raise InvalidInputConfig(f"InputPathsMap for target {target_id} has over 100 keys.")
        for key, path in paths.items():
            if not _MAP_KEY.fullmatch(key) or key.lower().startswith("aws."):
                raise InvalidInputConfig(f"InputPathsMap for target {target_id} has bad key {key}.")
            if not isinstance(path, str) or _parse_path(path) is None:
                raise InvalidInputConfig(
                    f"InputPathsMap for target {target_id} has bad JSONPath {path}."
                )
        for name in _PLACEHOLDER.findall(template):
            if name not in paths and name not in PREDEFINED:
                raise InvalidInputConfig(
                    f"InputTemplate for target {target_id} contains invalid placeholder {name}."
                )
        return cls(paths_map=paths, template=template)

    def render(self, event: Mapping[str, Any], context: TargetContext | None = None) -> str | None:
        """The body text delivered for this event (None: EventBridge delivers nothing)."""
        if self.input is not None:
            return self.input
        if self.input_path is not None:
            value = resolve_path(event, self.input_path)
            return None if value is MISSING else _compact(value)
        if self.template is None:
            return _compact(event)
        values = {name: resolve_path(event, p) for name, p in (self.paths_map or {}).items()}
        if any(f"<{name}>" in self.template for name in PREDEFINED):
            values.update(_predefined(event, context))
        return _fill(self.template, values)


def _predefined(event: Mapping[str, Any], context: TargetContext | None) -> dict[str, Any]:
    if context is None:
        raise ValueError("a TargetContext is needed for <aws.events.*> placeholders")
    when = context.ingestion_time
    if isinstance(when, datetime):  # a naive datetime is taken to be UTC
        when = when.replace(tzinfo=when.tzinfo or UTC).astimezone(UTC)
        when = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "aws.events.rule-arn": context.rule_arn,
        "aws.events.rule-name": context.rule_name,
        "aws.events.event.ingestion-time": when,
        "aws.events.event": {out: event[key] for out, key in _ENVELOPE.items() if key in event},
        "aws.events.event.json": dict(event),
    }


def _fill(template: str, values: Mapping[str, Any]) -> str | None:
    """Substitute placeholders; a JSON template must still parse afterwards."""
    is_json = template.lstrip().startswith("{")
    out: list[str] = []
    in_string, escaped, pos = False, False, 0
    while pos < len(template):
        match = _PLACEHOLDER.match(template, pos) if template[pos] == "<" else None
        if match is not None and match.group(1) in values:
            value = values[match.group(1)]
            out.append(_substitute(value, is_json, quoted=in_string or not is_json))
            pos = match.end()
            continue
        char = template[pos]
        if escaped:
            escaped = False
        elif char == "\\" and in_string:
            escaped = True
        elif char == '"':
            in_string = not in_string
        out.append(char)
        pos += 1
    text = "".join(out)
    if is_json:
        try:
            json.loads(text)
        except ValueError:
            return None
    return text


def _substitute(value: Any, is_json: bool, quoted: bool) -> str:
    """Text for one placeholder. ``quoted``: inside a JSON string or a string template."""
    if value is MISSING:
        return "" if quoted else '""'
    if isinstance(value, str):
        if not quoted:
            return _compact(value)
        return _compact(value)[1:-1] if is_json else value
    if isinstance(value, dict | list) and not is_json:
        return _compact(value).replace('"', "")
    return _compact(value)  # numbers, booleans, null; objects/arrays in JSON templates


def validate_input_config(target: Mapping[str, Any]) -> None:
    """Raise InvalidInputConfig for a target PutTargets would reject."""
    InputSpec.from_target(target)


def render_input(
    target_input_config: Mapping[str, Any],
    event: Mapping[str, Any],
    context: TargetContext | None = None,
) -> str | None:
    """Validate the target's input setting and render the body for ``event``."""
    return InputSpec.from_target(target_input_config).render(event, context)
