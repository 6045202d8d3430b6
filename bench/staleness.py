"""The judgement of bench/compare.py's StalenessProbe (which says what it measures), apart from
its sockets so that tests/unit/bench/test_staleness.py can feed it scripted rounds."""
from __future__ import annotations

from typing import Callable

Round = tuple[float, list[list[str]]]  # its start (monotonic seconds); each probe's contacts


def await_change(next_round: Callable[[], Round], old: str | None, new: str, t0: float,
                 fresh_rounds: int, stale_bound: float) -> float:
    """StalenessProbe's judgement of one change, kept apart so that a test can feed it rounds:
    next_round() -> (its start, monotonic seconds; each probe's contacts). Returns the start of the
    first of `fresh_rounds` consecutive rounds answering only [new]. Raises AssertionError on an
    answer other than [old] or [new], and on [old] in a round that starts more than `stale_bound`
    seconds after t0 (the REGISTER's 200)."""
    fresh_since: float | None = None
    run = 0
    while run < fresh_rounds:
        t, answers = next_round()
        for a in answers:
            if a != [new] and (old is None or a != [old]):
                raise AssertionError(f"staleness probe: {a} answered, want [{new!r}]")
            if a != [new] and t - t0 > stale_bound:
                raise AssertionError(f"staleness probe: {a} still answered "
                                     f"{(t - t0) * 1000:.0f} ms after {new} was registered")
        if all(a == [new] for a in answers):
            fresh_since = t if run == 0 else fresh_since
            run += 1
        else:
            run = 0
    assert fresh_since is not None
    return fresh_since
