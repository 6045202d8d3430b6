"""Prints "PASSED FAILED" for one meson testlog.json.

A doctest binary's own summary line counts its test cases, and so does pytest's (a Python suite
file: passed; failed plus errors, a fixture's setup or teardown included; skipped counts neither);
any other test counts as one, by its meson result. A test that meson saw fail (a crash, a timeout)
without a counted failure adds one failure.
"""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
# pytest's last line: "===== 1 failed, 11 passed, 1 skipped in 23.12s =====".
PYTEST = re.compile(r"^=+ (.*) in [\d.]+s(?: \([^)]*\))? =+$", re.M)
PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|xfailed|xpassed)")
# A script's own "N passed, N failed" line (the summary tests/run.sh itself prints).
PLAIN = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)


def counts(out: str) -> tuple[int, int] | None:
    """(passed, failed) from a test's own summary in `out`, or None without one."""
    match = DOCTEST.search(out)
    if match:
        return int(match.group(2)), int(match.group(3))
    summaries = PYTEST.findall(out)
    if summaries:
        p = f = 0
        for n, kind in PYTEST_COUNT.findall(summaries[-1]):
            if kind in ("passed", "xfailed"):
                p += int(n)
            else:
                f += int(n)
        return p, f
    match = PLAIN.search(out)
    if match:
        return int(match.group(1)), int(match.group(2))
    return None


passed = failed = 0
with open(sys.argv[1], encoding="utf-8") as log:
    for line in log:
        entry = json.loads(line)
        ok = entry.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
        got = counts(entry.get("stdout") or "")
        if got is None:
            passed += ok
            failed += not ok
            continue
        passed += got[0]
        failed += got[1]
        if not ok and got[1] == 0:
            failed += 1  # crashed or failed after its summary
print(passed, failed)
