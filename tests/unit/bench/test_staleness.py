#!/usr/bin/env python3
"""bench/staleness.py: how the staleness probe judges the answers to one registration change."""
from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from staleness import await_change  # noqa: E402

OLD, NEW = "sip:stale@192.0.2.1:10183", "sip:stale@192.0.2.1:10184"


def rounds(*script: tuple[float, list[list[str]]]):
    it = iter(script)
    return lambda: next(it)


class AwaitChange(unittest.TestCase):
    def test_the_change_counts_at_the_first_of_the_fresh_rounds(self):
        t = await_change(rounds((0.001, [[OLD], [OLD]]), (0.002, [[NEW], [NEW]]),
                                (0.003, [[NEW], [NEW]]), (0.004, [[NEW], [NEW]])),
                         OLD, NEW, 0.0, fresh_rounds=3, stale_bound=0.5)
        self.assertEqual(t, 0.002)

    def test_another_worker_may_answer_the_old_contact_for_a_moment(self):
        # The CI failure of 2026-12-08: one socket saw NEW, then OLD from a worker whose
        # invalidation had not arrived yet. Within the bound that is the contract, not an error;
        # the fresh run starts again after it.
        t = await_change(rounds((0.001, [[NEW], [OLD]]), (0.002, [[OLD], [NEW]]),
                                (0.003, [[NEW], [NEW]]), (0.004, [[NEW], [OLD]]),
                                (0.005, [[NEW], [NEW]]), (0.006, [[NEW], [NEW]]),
                                (0.007, [[NEW], [NEW]])),
                         OLD, NEW, 0.0, fresh_rounds=3, stale_bound=0.5)
        self.assertEqual(t, 0.005)

    def test_the_old_contact_past_the_bound_fails(self):
        # A stale reply stored in a near-cache would be answered for its whole TTL.
        with self.assertRaisesRegex(AssertionError, "still answered 600 ms after"):
            await_change(rounds((0.001, [[NEW], [NEW]]), (0.6, [[NEW], [OLD]])),
                         OLD, NEW, 0.0, fresh_rounds=3, stale_bound=0.5)

    def test_an_answer_that_is_neither_fails(self):
        with self.assertRaisesRegex(AssertionError, r"\[\] answered"):
            await_change(rounds((0.001, [[NEW], []])), OLD, NEW, 0.0, 3, 0.5)
        with self.assertRaisesRegex(AssertionError, "answered"):
            await_change(rounds((0.001, [[NEW, OLD], [NEW]])), OLD, NEW, 0.0, 3, 0.5)

    def test_the_first_registration_has_no_old_contact_to_accept(self):
        with self.assertRaisesRegex(AssertionError, "answered"):
            await_change(rounds((0.001, [[OLD]])), None, NEW, 0.0, 3, 0.5)


if __name__ == "__main__":
    unittest.main()
