"""An nginx-style access log of the local endpoint: the "timed combined" layout.

One line per answered (or abandoned) request, written when it completes, as nginx writes it:

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent" $request_time

`$time_local` is the completion time (UTC, 1 s resolution), `$request_time` the seconds from
arrival to completion (ms resolution). A request the endpoint never answered (a hang) is
logged as nginx logs one: 499 when the client had gone first, else 444 (connection closed
without a response). The request line carries the path only (query strings can hold keys).
So the local endpoint's traffic can be fitted with `sim fit endpoint` like a real server's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

NO_RESPONSE = 444
"""nginx's status for a connection closed without a response."""
CLIENT_CLOSED = 499
"""nginx's status for a request whose client closed the connection first."""


def escape(text: str) -> str:
    """A value as nginx writes it into a log line: `"`, `\\` and non-printable bytes as \\xHH."""
    out = []
    for byte in text.encode("utf-8", errors="replace"):
        char = chr(byte)
        out.append(f"\\x{byte:02X}" if byte < 32 or byte > 126 or char in '"\\' else char)
    return "".join(out)


def time_local(epoch: float) -> str:
    """`$time_local` in UTC: `10/Oct/2025:13:55:36 +0000`."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


class AccessLog:
    """Appends one "timed combined" line per request to a file (line-buffered)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1)
        self.lines = 0

    def write(
        self,
        *,
        remote: str | None,
        method: str,
        path: str,
        status: int | None,
        client_gone: bool,
        request_time_s: float,
        user_agent: str,
    ) -> None:
        """Log one completed request (`status` None: never answered)."""
        if self._file is None:
            return
        code = status if status is not None else (CLIENT_CLOSED if client_gone else NO_RESPONSE)
        request = escape(f"{method} {path} HTTP/1.1")
        self._file.write(
            f'{remote or "-"} - - [{time_local(time.time())}] "{request}" {code} 0 "-" '
            f'"{escape(user_agent) or "-"}" {max(request_time_s, 0.0):.3f}\n'
        )
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
