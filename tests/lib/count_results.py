"""Prints "PASSED FAILED" for one meson testlog.json.

A doctest binary's own summary line counts its test cases; any other test counts as one, by its
meson result.
"""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
# The integration and end-to-end scripts end with the project's own summary line.
PLAIN = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)

passed = failed = 0
with open(sys.argv[1], encoding="utf-8") as log:
    for line in log:
        entry = json.loads(line)
        ok = entry.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
        out = entry.get("stdout") or ""
        match = DOCTEST.search(out) or PLAIN.search(out)
        if match and match.re is PLAIN:
            passed += int(match.group(1))
            failed += int(match.group(2))
            if not ok and int(match.group(2)) == 0:
                failed += 1
        elif match:
            passed += int(match.group(2))
            failed += int(match.group(3))
            if not ok and int(match.group(3)) == 0:
                failed += 1  # crashed or failed after its summary
        elif ok:
            passed += 1
        else:
            failed += 1
print(passed, failed)
