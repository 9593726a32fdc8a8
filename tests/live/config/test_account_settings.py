"""`sim.account_*`: the account's invocation quota in a core config (docs/live-core.md)."""

from __future__ import annotations

from typing import Any

import pytest

from sim.errors import InputError
from sim.live.config.loading import build_config
from tests.support.processes import core_config_data


def config(**sim: Any) -> dict[str, Any]:
    return core_config_data("https://example.com/", sim=sim)


def test_no_quota_by_default() -> None:
    quota = build_config(config(), source="c.yaml").sim.account_quota
    assert quota.invocation_limit_per_second is None


def test_the_quota_reads_as_a_scenarios_account_block() -> None:
    sim = build_config(config(account_invocation_limit_per_second=750), source="c.yaml").sim
    quota = sim.account_quota
    assert (quota.invocation_limit_per_second, quota.burst, quota.order) == (
        750,
        750,
        "after_destination",
    )
    sim = build_config(
        config(
            account_invocation_limit_per_second=750,
            account_burst_capacity=100,
            account_order="before_destination",
        ),
        source="c.yaml",
    ).sim
    assert (sim.account_quota.burst, sim.account_quota.order) == (100, "before_destination")


@pytest.mark.parametrize(
    ("settings", "key", "problem"),
    [
        (
            {"account_invocation_limit_per_second": 0},
            "sim.account_invocation_limit_per_second",
            "greater than 0",
        ),
        (
            {"account_burst_capacity": 0.5},
            "sim.account_burst_capacity",
            "greater than or equal to 1",
        ),
        ({"account_order": "sideways"}, "sim.account_order", "after_destination"),
    ],
)
def test_bad_quota_settings_name_their_key(
    settings: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(InputError) as caught:
        build_config(config(**settings), source="c.yaml")
    assert caught.value.key == key and problem in caught.value.problem
