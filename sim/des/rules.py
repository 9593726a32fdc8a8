"""The rules that share one destination's line: their retry policies and dead-letter queues (B3).

A waiting delivery is one (event, rule) pair. The model numbers it `event * n_rules + rule`
(the *delivery id*, carried as `Items.event_id`), so its rule is the remainder and its random
draws, keyed to the delivery id, differ from rule to rule. With one rule in the whole scenario
(the single-destination form) the delivery id is the event id and every draw is what it always
was. Every decision goes through `sim.policy`, per rule: a destination with one rule makes
exactly the calls the single-destination model made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sim import policy
from sim.scenario.model import RetryPolicy


class LaneRules:
    """The rules of one destination's line: `indices` in the bus's rule list, with their policies."""

    def __init__(
        self,
        indices: Sequence[int],
        retry_policies: Sequence[RetryPolicy],
        dead_letter_queues: Sequence[bool],
        n_rules: int,
    ) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.policies = tuple(retry_policies)
        self.dlq = tuple(dead_letter_queues)
        self.n_rules = n_rules
        self.tables = [policy.outcome_table(p.retry_statuses) for p in self.policies]
        self.single = len(self.policies) == 1
        self._ages = np.zeros(n_rules)
        self._ages[self.indices] = [p.maximum_event_age for p in self.policies]
        self._age_out = np.zeros(n_rules, dtype=np.int8)
        self._age_out[self.indices] = [policy.age_out_final(q) for q in self.dlq]

    # --- ids ------------------------------------------------------------------------------

    def rule_of(self, delivery_id: np.ndarray) -> np.ndarray:
        """Each delivery's rule, as an index into the bus's rules."""
        if self.n_rules == 1:
            return np.zeros(np.shape(delivery_id), dtype=np.int64)
        return np.asarray(delivery_id) % self.n_rules

    def _groups(self, delivery_id: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(position among this line's rules, item positions) of each rule present."""
        rules = self.rule_of(delivery_id)
        return [(k, np.flatnonzero(rules == r)) for k, r in enumerate(self.indices.tolist())]

    # --- S6: ages -------------------------------------------------------------------------

    def deadline(self, arrival_at: np.ndarray, delivery_id: np.ndarray) -> np.ndarray:
        """When each delivery reaches its rule's maximum event age (S6)."""
        if self.single:
            return policy.age_deadline(np.asarray(arrival_at), self.policies[0])
        return policy.deadlines(arrival_at, self._ages[self.rule_of(delivery_id)])

    def deadline_one(self, arrival_at: float, delivery_id: int) -> float:
        """`deadline` of one delivery, in plain floats."""
        rule = 0 if self.n_rules == 1 else delivery_id % self.n_rules
        if self.single:
            return policy.age_deadline(arrival_at, self.policies[0])
        return arrival_at + float(self._ages[rule])

    def age_out_final(self, delivery_id: np.ndarray) -> np.ndarray:
        """Final code of deliveries that aged out waiting: their rule's DLQ, else dropped (S9)."""
        if self.single:
            return np.full(np.shape(delivery_id), policy.age_out_final(self.dlq[0]), np.int8)
        return self._age_out[self.rule_of(delivery_id)]

    # --- S5-S9: after an attempt ------------------------------------------------------------

    def decide(
        self,
        status: np.ndarray,
        retries_done: np.ndarray,
        arrival_at: np.ndarray,
        complete_at: np.ndarray,
        backoff_draw: np.ndarray,
        previous_backoff_s: np.ndarray,
        retry_after_s: np.ndarray,
        delivery_id: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, policy.Decision]:
        """Classify each attempt, draw its backoff and decide it (S5-S9), by its rule's policy.

        Returns (outcome codes, backoff seconds, decision)."""
        if self.single:
            return self._decide_rule(
                0, status, retries_done, arrival_at, complete_at, backoff_draw,
                previous_backoff_s, retry_after_s,
            )  # fmt: skip
        n = status.size
        kind = np.zeros(n, dtype=np.int8)
        backoff = np.zeros(n)
        next_ready = np.full(n, np.nan)
        final = np.zeros(n, dtype=np.int8)
        reason = np.zeros(n, dtype=np.int8)
        for k, at in self._groups(delivery_id):
            if not at.size:
                continue
            kind_k, backoff_k, decision = self._decide_rule(
                k, status[at], retries_done[at], arrival_at[at], complete_at[at],
                backoff_draw[at], previous_backoff_s[at], retry_after_s[at],
            )  # fmt: skip
            kind[at], backoff[at] = kind_k, backoff_k
            next_ready[at], final[at], reason[at] = decision
        return kind, backoff, policy.Decision(next_ready, final, reason)

    def _decide_rule(
        self,
        k: int,
        status: np.ndarray,
        retries_done: np.ndarray,
        arrival_at: np.ndarray,
        complete_at: np.ndarray,
        backoff_draw: np.ndarray,
        previous_backoff_s: np.ndarray,
        retry_after_s: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, policy.Decision]:
        retry = self.policies[k]
        kind = np.asarray(policy.classify(status, self.tables[k]))
        backoff = policy.backoff_delay(
            retries_done + 1, backoff_draw, retry.backoff, previous_backoff_s
        )
        decision = policy.decide(
            kind, retries_done, arrival_at, complete_at, backoff, retry_after_s, retry, self.dlq[k]
        )
        return kind, np.asarray(backoff, dtype=float), decision
