#!/usr/bin/env python3
"""bench/bench_report.py: the row labels and ratios of bench/compare.py's tables (no processes)."""
from __future__ import annotations

import math
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from bench_report import (capacity_row, config_label, paired_ratio, parse_config,  # noqa: E402
                          rotated, summary_table)


def run(rep: int, rate: float, cpu: float = 1.0, **extra) -> dict:
    return {"rep": rep, "responses_per_s": rate, "server_cpu_us_per_response": cpu, **extra}


class Labels(unittest.TestCase):
    def test_rows_are_named_by_the_flags_passed(self):
        self.assertEqual(config_label(()), "defaults")
        self.assertEqual(config_label(("--cache-ttl", "0")), "--cache-ttl 0")
        self.assertEqual(config_label(("--cache-ttl", "60000", "--cache-max-entries", "200000")),
                         "--cache-ttl 60000 --cache-max-entries 200000")

    def test_config_values_parse_to_flags(self):
        self.assertEqual(parse_config("defaults"), ())
        self.assertEqual(parse_config(""), ())
        self.assertEqual(parse_config(" --cache-ttl 0 "), ("--cache-ttl", "0"))
        self.assertEqual(parse_config("--allow '127.0.0.0/8'"), ("--allow", "127.0.0.0/8"))
        for text in ("defaults", "--cache-ttl 0", "--cache-ttl 60000 --workers-x 3"):
            flags = parse_config(text)
            self.assertEqual(parse_config(config_label(flags)), flags)


class Ratios(unittest.TestCase):
    def test_ratio_is_within_a_repetition_then_the_median(self):
        # Repetition 1 ran on a noisy machine: both sides slow. Within-repetition ratios are 2, 2,
        # 2; a ratio of medians would be 150/60 = 2.5.
        ours = [run(0, 200), run(1, 40), run(2, 150)]
        kam = [run(0, 100), run(1, 20), run(2, 75)]
        self.assertEqual(paired_ratio(ours, kam), 2.0)
        # Paired by `rep`, not by position.
        self.assertEqual(paired_ratio(ours, list(reversed(kam))), 2.0)

    def test_missing_or_zero_repetitions_are_skipped(self):
        ours = [run(0, 100), run(1, 100), run(2, 300)]
        kam = [run(0, 50), run(1, 0)]
        self.assertEqual(paired_ratio(ours, kam), 2.0)
        self.assertTrue(math.isnan(paired_ratio(ours, [])))
        self.assertEqual(paired_ratio([run(0, 1, redis_commands_per_s=900)],
                                      [run(0, 1, redis_commands_per_s=30)],
                                      "redis_commands_per_s"), 30.0)

    def test_rotation_gives_each_peer_each_place(self):
        peers = ["a", "b", "c"]
        self.assertEqual(rotated(peers, 0), ["a", "b", "c"])
        self.assertEqual(rotated(peers, 1), ["b", "c", "a"])
        self.assertEqual(rotated(peers, 4), ["b", "c", "a"])
        self.assertEqual(rotated([], 3), [])


class Summary(unittest.TestCase):
    def test_issue_16_table(self):
        runs = {
            ("ours", "defaults", 2, 16): [run(0, 150_000, 8.0), run(1, 120_000, 9.0)],
            ("ours", "defaults", 2, 1): [run(0, 90_000, 7.0), run(1, 80_000, 7.5)],
            ("kmem", 16): [run(0, 100_000, 12.0), run(1, 100_000, 14.0)],
            ("kmem", 1): [run(0, 100_000, 12.0), run(1, 80_000, 13.0)],
            ("null", 16): [run(0, 300_000, 2.5), run(1, 280_000, 2.7)],
            ("null", 1): [run(0, 200_000, 2.0), run(1, 220_000, 2.2)],
        }
        lines = summary_table([("defaults", 2, 16), ("defaults", 2, 1), ("--cache-ttl 0", 1, 16)],
                              runs, "kmem", "null")
        self.assertIn("302/s vs Kamailio in memory", lines[0])
        self.assertIn("server+Redis CPU µs per 302 (Kamailio; null responder)", lines[0])
        self.assertEqual(len(lines), 5)
        # 16 sockets: ratios 1.5 and 1.2, median 1.35; CPU medians 8.5 (13.0; 2.6).
        self.assertEqual(lines[2], "| defaults | 2 | 16 | 1.35x | 8.5 (13.0; 2.6) | "
                                   "135,000 (100,000; 290,000) |")
        # 1 socket: ratios 0.9 and 1.0.
        self.assertEqual(lines[3], "| defaults | 2 | 1 | 0.95x | 7.2 (12.5; 2.1) | "
                                   "85,000 (90,000; 210,000) |")
        # A row that did not run says so instead of inventing a figure.
        self.assertEqual(lines[4], "| --cache-ttl 0 | 1 | 16 | — | — (13.0; 2.6) | "
                                   "— (100,000; 290,000) |")


class Capacity(unittest.TestCase):
    def test_daemon_cpu_is_server_minus_redis_run_by_run(self):
        runs = [run(0, 1, 9.0, redis_cpu_us_per_response=3.0, redis_commands_per_response=1.0,
                    hit_ratio=None),
                run(1, 1, 10.0, redis_cpu_us_per_response=5.0, redis_commands_per_response=1.0,
                    hit_ratio=None),
                run(2, 1, 8.0, redis_cpu_us_per_response=3.0, redis_commands_per_response=1.002,
                    hit_ratio=None)]
        # Daemon 6, 5, 5 -> 5.00 (a difference of medians would say 9 - 3 = 6); Redis 3.00;
        # per daemon core 10^6 / 5 = 200,000; per Redis core 10^6 / 3 = 333,333.
        self.assertEqual(capacity_row("INVITE -> 302", "--cache-ttl 0", runs),
                         "| INVITE -> 302 | --cache-ttl 0 | 5.00 | 3.00 | 1.000 | — | "
                         "200,000 | 333,333 |")

    def test_hit_ratio_and_a_redis_that_did_nothing(self):
        runs = [run(0, 1, 5.5, redis_cpu_us_per_response=0.0, redis_commands_per_response=0.01,
                    hit_ratio=0.99)]
        self.assertEqual(capacity_row("INVITE -> 302", "defaults", runs),
                         "| INVITE -> 302 | defaults | 5.50 | 0.00 | 0.010 | 99.0% | 181,818 | — |")


if __name__ == "__main__":
    unittest.main(verbosity=1)
