"""Value operators of EventBridge event patterns (one entry of a field's value array).

Each operator compiles to a predicate over one *leaf* value of the event (a JSON string,
number, boolean or null). Validation messages follow aws/event-ruler, which EventBridge
prefixes with ``Event pattern is not valid. Reason: ``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[Any], bool]

STAR = 256  # wildcard token in a parsed wildcard operand (bytes are 0..255)
_IPV4_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_RE = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")
_MISSING = object()


class InvalidEventPattern(ValueError):
    """An event pattern that EventBridge would reject (InvalidEventPatternException)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Event pattern is not valid. Reason: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class FieldTest:
    """The compiled value array of one pattern field: alternatives, OR-ed together."""

    predicates: tuple[Predicate, ...]
    absent_ok: bool  # the array holds {"exists": false}
    wildcards: tuple[tuple[int, ...], ...] = ()  # parsed wildcard operands, for complexity

    def accepts(self, value: Any) -> bool:
        """True if some alternative accepts this leaf value."""
        return any(predicate(value) for predicate in self.predicates)


def is_number(value: Any) -> bool:
    """JSON number (Python bool is an int subclass but not a JSON number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_double(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def numbers_equal(a: int | float, b: int | float) -> bool:
    """Compare two JSON numbers by value, as doubles (event-ruler's ComparableNumber)."""
    try:
        return float(a) == float(b)
    except OverflowError:  # an integer beyond the double range: compare exactly
        return a == b


# ---------------------------------------------------------------- simple predicates


def exact(expected: Any) -> Predicate:
    """Literal value: strings/booleans/null by identity of type, numbers by value."""
    if is_number(expected):
        return lambda v: is_number(v) and numbers_equal(v, expected)
    if isinstance(expected, bool) or expected is None:
        return lambda v: v is expected
    return lambda v: isinstance(v, str) and v == expected


def _prefix(text: str, ignore_case: bool) -> Predicate:
    if ignore_case:
        low = text.lower()
        return lambda v: isinstance(v, str) and v.lower().startswith(low)
    return lambda v: isinstance(v, str) and v.startswith(text)


def _suffix(text: str, ignore_case: bool) -> Predicate:
    if ignore_case:
        low = text.lower()
        return lambda v: isinstance(v, str) and v.lower().endswith(low)
    return lambda v: isinstance(v, str) and v.endswith(text)


def _equals_ignore_case(text: str) -> Predicate:
    low = text.lower()
    return lambda v: isinstance(v, str) and v.lower() == low


def _always(_value: Any) -> bool:
    return True


# ---------------------------------------------------------------- wildcard


def parse_wildcard(operand: str) -> tuple[int, ...]:
    """Tokenise a wildcard operand into UTF-8 bytes and STAR; ``\\*``/``\\\\`` escape."""
    data = operand.encode("utf-8")
    tokens: list[int] = []
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == 0x2A:  # '*'
            if i + 1 < len(data) and data[i + 1] == 0x2A:
                raise InvalidEventPattern(f"Consecutive wildcard characters at pos {i + 1}")
            tokens.append(STAR)
        elif byte == 0x5C:  # '\'
            if i + 1 < len(data) and data[i + 1] in (0x2A, 0x5C):
                tokens.append(data[i + 1])
                i += 1
            else:
                raise InvalidEventPattern(f"Invalid escape character at pos {i + 1}")
        else:
            tokens.append(byte)
        i += 1
    return tuple(tokens)


def _wildcard(tokens: tuple[int, ...]) -> Predicate:
    """Glob match in linear time: literal segments between stars, placed leftmost-first."""
    segments: list[str] = []
    literal = bytearray()
    for token in (*tokens, STAR):
        if token == STAR:
            segments.append(literal.decode("utf-8"))
            literal.clear()
        else:
            literal.append(token)
    if len(segments) == 1:
        return exact(segments[0])
    first, *middle, last = segments

    def test(value: Any) -> bool:
        if not isinstance(value, str) or len(value) < len(first) + len(last):
            return False
        if not (value.startswith(first) and value.endswith(last)):
            return False
        pos, end = len(first), len(value) - len(last)
        for segment in middle:
            found = value.find(segment, pos, end)
            if found < 0:
                return False
            pos = found + len(segment)
        return True

    return test


# ---------------------------------------------------------------- numeric and cidr


_LOWER_OPS = {">": True, ">=": False}  # operator -> open bound
_UPPER_OPS = {"<": True, "<=": False}


def _numeric(operand: Any) -> Predicate:
    if not isinstance(operand, list):
        raise InvalidEventPattern("Value of numeric must be an array.")
    items = list(operand) + [_MISSING]  # sentinel plays Jackson's END_ARRAY
    op = items[0]
    if not isinstance(op, str):
        raise InvalidEventPattern(f"Invalid member in numeric match: {_token_text(op)}")
    if op not in ("=", *_LOWER_OPS, *_UPPER_OPS):
        raise InvalidEventPattern(f"Unrecognized numeric range operator: {op}")
    first = _numeric_value("equals" if op == "=" else op, items[1])
    if op == "=":
        _expect_end(items, 2, "Too many elements in numeric expression")
        return lambda v: is_number(v) and _as_double(v) == first
    if op in _UPPER_OPS:
        _expect_end(items, 2, "Too many elements in numeric expression")
        return _range(None, False, first, _UPPER_OPS[op])
    if items[2] is _MISSING:
        return _range(first, _LOWER_OPS[op], None, False)
    top_op = items[2]
    if not isinstance(top_op, str):
        raise InvalidEventPattern(f"Bad value in numeric range: {_token_text(top_op)}")
    if top_op not in _UPPER_OPS:
        raise InvalidEventPattern(f"Bad numeric range operator: {top_op}")
    top = _numeric_value(top_op, items[3])
    _expect_end(items, 4, "Too many terms in numeric range expression")
    if first >= top:
        raise InvalidEventPattern("Bottom must be less than top")
    return _range(first, _LOWER_OPS[op], top, _UPPER_OPS[top_op])


def _numeric_value(label: str, item: Any) -> float:
    if not is_number(item):
        raise InvalidEventPattern(f"Value of {label} must be numeric")
    return _as_double(item)


def _expect_end(items: list[Any], index: int, message: str) -> None:
    if items[index] is not _MISSING:
        raise InvalidEventPattern(message)


def _range(low: float | None, low_open: bool, high: float | None, high_open: bool) -> Predicate:
    def test(value: Any) -> bool:
        if not is_number(value):
            return False
        x = _as_double(value)
        if low is not None and (x <= low if low_open else x < low):
            return False
        return high is None or (x < high if high_open else x <= high)

    return test


def _token_text(item: Any) -> str:
    """Roughly what Jackson's getText() shows for a JSON token."""
    if item is _MISSING:
        return "]"
    if isinstance(item, dict | list):
        return "{" if isinstance(item, dict) else "["
    if isinstance(item, bool) or item is None:
        return {True: "true", False: "false", None: "null"}[item]
    return str(item)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal as Java's InetAddress reads it (dotted-quad octets are decimal)."""
    try:
        if _IPV4_RE.fullmatch(text):
            return ipaddress.IPv4Address(".".join(str(int(octet)) for octet in text.split(".")))
        return ipaddress.IPv6Address(text) if _IPV6_RE.fullmatch(text) else None
    except ValueError:
        return None


def _cidr(operand: Any) -> Predicate:
    if not isinstance(operand, str):
        raise InvalidEventPattern("prefix match pattern must be a string")
    parts = operand.split("/")
    while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
        parts.pop()
    if len(parts) != 2:
        raise InvalidEventPattern("Malformed CIDR, one '/' required")
    if not re.fullmatch(r"[+-]?[0-9]+", parts[1]):
        raise InvalidEventPattern("Malformed CIDR, mask bits must be an integer")
    bits = int(parts[1])
    if bits < 0:
        raise InvalidEventPattern("Malformed CIDR, mask bits must not be negative")
    if not (_IPV4_RE.fullmatch(parts[0]) or _IPV6_RE.fullmatch(parts[0])):
        raise InvalidEventPattern(f"Nonstandard IP address: {parts[0]}")
    base = _parse_ip(parts[0])
    if base is None:
        raise InvalidEventPattern(f"Invalid IP address: {parts[0]}")
    width = base.max_prefixlen
    if bits >= width:
        raise InvalidEventPattern(f"IPv{base.version} mask bits must be < {width}")
    host_bits = (1 << (width - bits)) - 1
    low, high = int(base) & ~host_bits, int(base) | host_bits

    def test(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        ip = _parse_ip(value)
        return ip is not None and ip.version == base.version and low <= int(ip) <= high

    return test


# ---------------------------------------------------------------- anything-but


def _anything_but(operand: Any) -> tuple[Predicate, tuple[tuple[int, ...], ...]]:
    if isinstance(operand, dict):
        return _anything_but_object(operand)
    if isinstance(operand, list):
        values = operand
    elif isinstance(operand, str) or is_number(operand):
        values = [operand]
    else:
        raise InvalidEventPattern(
            "Value of anything-but must be an array or single string/number value."
        )
    if any(not (isinstance(v, str) or is_number(v)) for v in values):
        raise InvalidEventPattern("Inside anything but list, start|null|boolean is not supported.")
    strings = frozenset(v for v in values if isinstance(v, str))
    numbers = tuple(v for v in values if is_number(v))
    if bool(strings) == bool(numbers):
        raise InvalidEventPattern(
            "Inside anything but list, either all values are number or string, "
            "mixed type is not supported"
        )
    if numbers:
        return (lambda v: not (is_number(v) and any(numbers_equal(v, n) for n in numbers))), ()
    return (lambda v: not (isinstance(v, str) and v in strings)), ()


def _anything_but_object(operand: dict[str, Any]) -> tuple[Predicate, tuple[tuple[int, ...], ...]]:
    if not operand:
        raise InvalidEventPattern("Anything-But expression name not found")
    kind, value = next(iter(operand.items()))
    if kind not in ("prefix", "suffix", "wildcard", "equals-ignore-case"):
        raise InvalidEventPattern(f"Unsupported anything-but pattern: {kind}")
    if isinstance(value, dict):
        raise InvalidEventPattern(
            "Value of anything-but must be an array or single string/number value."
        )
    values = value if isinstance(value, list) else [value]
    all_strings = bool(values) and all(isinstance(v, str) for v in values)
    if kind == "equals-ignore-case" and not all_strings:
        raise InvalidEventPattern(
            "Inside anything-but/equals-ignore-case list, "
            "number|start|null|boolean is not supported."
        )
    if kind == "wildcard" and not all_strings:
        raise InvalidEventPattern("wildcard match pattern must be a string")
    if kind in ("prefix", "suffix"):
        if not all_strings:
            raise InvalidEventPattern("prefix/suffix match pattern must be a string")
        if "" in values:
            raise InvalidEventPattern("Null prefix/suffix not allowed")
    if len(operand) > 1:
        raise InvalidEventPattern("Only one key allowed in match expression")
    tokens: tuple[tuple[int, ...], ...] = ()
    if kind == "prefix":
        inner = [_prefix(v, False) for v in values]
    elif kind == "suffix":
        inner = [_suffix(v, False) for v in values]
    elif kind == "equals-ignore-case":
        inner = [_equals_ignore_case(v) for v in values]
    else:
        tokens = tuple(parse_wildcard(v) for v in values)
        inner = [_wildcard(t) for t in tokens]
    return (lambda v: not any(p(v) for p in inner)), tokens


# ---------------------------------------------------------------- dispatch


def _string_operand(name: str, operand: Any) -> tuple[str, bool]:
    """Operand of prefix/suffix: a string, or {"equals-ignore-case": string}."""
    if isinstance(operand, str):
        return operand, False
    if isinstance(operand, dict) and operand:
        key, value = next(iter(operand.items()))
        if key != "equals-ignore-case":
            raise InvalidEventPattern(f"Unsupported {name} pattern: {key}")
        if not isinstance(value, str):
            raise InvalidEventPattern("equals-ignore-case match pattern must be a string")
        if len(operand) > 1:
            raise InvalidEventPattern("Only one key allowed in match expression")
        return value, True
    raise InvalidEventPattern(f"{name} match pattern must be a string")


def compile_operator(
    expression: dict[str, Any],
) -> tuple[Predicate | None, tuple[tuple[int, ...], ...]]:
    """Compile one ``{operator: operand}`` object.

    Returns the predicate (None for ``{"exists": false}``) and any parsed wildcard operands.
    """
    if not expression:
        raise InvalidEventPattern("Match expression name not found")
    name, operand = next(iter(expression.items()))
    tokens: tuple[tuple[int, ...], ...] = ()
    predicate: Predicate | None
    if name in ("prefix", "suffix"):
        text, ignore_case = _string_operand(name, operand)
        predicate = (_prefix if name == "prefix" else _suffix)(text, ignore_case)
    elif name == "equals-ignore-case":
        if not isinstance(operand, str):
            raise InvalidEventPattern("equals-ignore-case match pattern must be a string")
        predicate = _equals_ignore_case(operand)
    elif name == "wildcard":
        if not isinstance(operand, str):
            raise InvalidEventPattern("wildcard match pattern must be a string")
        tokens = (parse_wildcard(operand),)
        predicate = _wildcard(tokens[0])
    elif name == "anything-but":
        predicate, tokens = _anything_but(operand)
    elif name == "numeric":
        predicate = _numeric(operand)
    elif name == "cidr":
        predicate = _cidr(operand)
    elif name == "exists":
        if not isinstance(operand, bool):
            raise InvalidEventPattern("exists match pattern must be either true or false.")
        predicate = _always if operand else None
    else:
        raise InvalidEventPattern(f"Unrecognized match type {name}")
    if len(expression) > 1:
        message = (
            "Too many elements in numeric expression"
            if name in ("numeric", "anything-but")
            else "Only one key allowed in match expression"
        )
        raise InvalidEventPattern(message)
    return predicate, tokens


def compile_field(values: list[Any]) -> FieldTest:
    """Compile a pattern field's value array (its entries are alternatives)."""
    if not values:
        raise InvalidEventPattern("Empty arrays are not allowed")
    predicates: list[Predicate] = []
    wildcards: list[tuple[int, ...]] = []
    absent_ok = False
    for value in values:
        if isinstance(value, dict):
            predicate, tokens = compile_operator(value)
            wildcards.extend(tokens)
            if predicate is None:
                absent_ok = True
            else:
                predicates.append(predicate)
        elif isinstance(value, list):
            raise InvalidEventPattern("Match value must be String, number, true, false, or null")
        else:
            predicates.append(exact(value))
    return FieldTest(tuple(predicates), absent_ok, tuple(wildcards))
