"""The one error type users see: bad input, reported as one line naming file, key path and problem."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (scenario, config, CSV, events): the CLI prints `str(err)` and exits with code 2."""

    def __init__(self, source: str | None, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(self.line())

    def __reduce__(self) -> tuple[type[InputError], tuple[str | None, str | None, str]]:
        """Pickle by its three parts, so an error raised in a worker process arrives whole."""
        return (type(self), (self.source, self.key, self.problem))

    def line(self) -> str:
        """Format as `file: key.path: problem`, leaving out the parts that are unknown."""
        parts = [_printable(p) for p in (self.source, self.key) if p]
        one_line = " ".join(self.problem.split())
        return ": ".join([*parts, _printable(one_line)])


def _printable(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (`\\n`, `\\x1b`), so a
    key or file name taken from the input can neither break the line nor drive a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
