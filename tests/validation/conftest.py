"""Markers of the validation tests (`live`: real sockets and real time; `slow`: over ~5 s)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "live: uses real sockets or real time")
    config.addinivalue_line("markers", "slow: takes more than about 5 s")
