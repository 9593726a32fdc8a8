"""Test-suite configuration: the markers that let you run the tests by intent.

* `slow`: takes more than a few seconds (long simulations, many replications, live validation);
* `live`: real sockets or real time (loopback HTTP servers, subprocesses, the delivery core);
* `soak`: the core under sustained load (short in CI; `SIM_SOAK=1` for the full run).

`make test` runs everything; `make test-fast` runs the tests with none of these markers
(`-m "not slow and not live and not soak"`), in under a minute on 2 cores. Shared helpers live
in `tests/support/`, never in another test module.
"""

from __future__ import annotations

import pytest

MARKERS = {
    "slow": "takes more than a few seconds; left out of `make test-fast`",
    "live": "uses real sockets, subprocesses or real time; left out of `make test-fast`",
    "soak": "the delivery core under sustained load; left out of `make test-fast`",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
