"""How a delivery ends: the DLQ record of S9, the store update, and rows for ends without a request.

An event ends delivered, dead-lettered (with `RULE_ARN`, `TARGET_ARN`, `ERROR_CODE`,
`ERROR_MESSAGE`, `EXHAUSTED_RETRY_CONDITION` when a retry limit ended it, `RETRY_ATTEMPTS`)
or dropped. Some events end without a request being made — they aged out waiting for a
token (S6), or could not be sent (an invalid parameter, no input, a deauthorized connection).
Their last record row has outcome `expired` and no dispatch time, like the model's age-outs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from sim import policy
from sim.live.delivery.lanes import Delivery, Route
from sim.live.delivery.recorder import Recorder
from sim.live.delivery.store import Finish

log = logging.getLogger("sim.live")

STATES = {policy.FINAL_DELIVERED: "delivered", policy.FINAL_DLQ: "dlq"}
AGED_OUT_WAITING = "THROTTLING"
"""ERROR_CODE of an event that aged out waiting for a token before any attempt was made."""


def dlq_attributes(
    route: Route, reason: int, error_code: str, message: str, retries_done: int
) -> dict[str, Any]:
    """The DLQ message attributes of S9 for an event that ended with `reason`."""
    attributes: dict[str, Any] = {
        "RULE_ARN": route.rule_arn,
        "TARGET_ARN": route.target_arn,
        "ERROR_CODE": error_code,
        "ERROR_MESSAGE": message,
    }
    condition = policy.exhausted_retry_condition(reason)
    if condition is not None:
        attributes["EXHAUSTED_RETRY_CONDITION"] = condition
    attributes["RETRY_ATTEMPTS"] = retries_done
    return attributes


class Endings:
    """Ends deliveries: records, DLQ attributes and store updates, then tells the core."""

    def __init__(
        self,
        recorder: Recorder,
        store: Callable[[Finish], None],
        epoch: Callable[[float], float],
        redact: Callable[[str], str],
        on_end: Callable[[], None],
    ) -> None:
        self.recorder = recorder
        self.store = store
        self.epoch = epoch
        self.redact = redact
        self.on_end = on_end
        self._timers: set[asyncio.TimerHandle] = set()

    def finish(
        self, delivery: Delivery, final: int, reason: int, error_code: str, message: str, at: float
    ) -> None:
        """End a delivery at core time `at` with a final and reason code from `sim.policy`.

        `message` may hold secrets: it is redacted here, where it is kept (the DLQ record).
        """
        route = delivery.route
        attributes: dict[str, Any] = {}
        if final == policy.FINAL_DLQ:
            message = self.redact(message)
            attributes = dlq_attributes(route, reason, error_code, message, delivery.retries_done)
            log.info(
                "delivery %d (event %s) dead-lettered to %s: %s, %s: %s, after %d retries",
                delivery.id, delivery.event.get("id"), route.dead_letter_arn,
                policy.REASONS[reason], error_code, message, delivery.retries_done,
            )  # fmt: skip
        elif final != policy.FINAL_DELIVERED:
            reason_name = policy.REASONS[reason]
            log.info("delivery %d dropped (%s, %s)", delivery.id, reason_name, error_code)
        state = STATES.get(final, "dropped")
        when = self.epoch(at)
        self.store(
            Finish(
                delivery.id, state, delivery.retries_done, when, route.dead_letter_arn, attributes
            )
        )
        self.on_end()

    def age_out(self, delivery: Delivery, deadline: float) -> None:
        """The event reached its maximum age waiting for a token: it ends at `deadline` (S6)."""
        final = policy.age_out_final(delivery.route.dead_letter_queue)
        self._row(delivery, deadline, final, policy.MAXIMUM_EVENT_AGE)
        if delivery.last_status is not None:
            code, message = policy.error_code(delivery.last_status), delivery.last_message
        else:
            code = AGED_OUT_WAITING
            message = "the event reached its maximum age waiting for the invocation rate limit"
        self.finish(delivery, final, policy.MAXIMUM_EVENT_AGE, code, message, deadline)

    def age_out_later(self, delivery: Delivery, now: float) -> None:
        """End a delivery at its deadline (S6), on a timer of the running loop (`now`: core time)."""
        deadline = policy.age_deadline(delivery.arrival_at, delivery.route.retry_policy)
        handle: asyncio.TimerHandle | None = None

        def expire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.age_out(delivery, deadline)

        handle = asyncio.get_running_loop().call_later(max(0.0, deadline - now), expire)
        self._timers.add(handle)

    def cancel_timers(self) -> None:
        """Cancel the age-outs still to come (the core is stopping; they stay pending)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def not_sent(self, delivery: Delivery, code: str, message: str, at: float) -> None:
        """End a delivery that could not be sent: failed without retry, no request made."""
        final = policy.age_out_final(delivery.route.dead_letter_queue)
        self._row(delivery, at, final, policy.NOT_RETRYABLE, policy.NOT_SENT)
        self.finish(delivery, final, policy.NOT_RETRYABLE, code, message, at)

    def _row(
        self, delivery: Delivery, at: float, final: int, reason: int, outcome: int = policy.EXPIRED
    ) -> None:
        self.recorder.row(
            event_id=delivery.id,
            attempt=delivery.retries_done + 1,
            arrival_at=delivery.arrival_at,
            ready_at=delivery.ready_at,
            dispatch_at=math.nan,
            complete_at=at,
            status=policy.STATUS_TIMEOUT,
            outcome=outcome,
            retry_after_s=None,
            next_ready_at=math.nan,
            final=final,
            final_reason=reason,
        )
