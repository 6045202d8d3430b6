"""GET /metrics of a daemon and one sample of it (Prometheus text format)."""
from __future__ import annotations

import re
import urllib.request

from .base import LOCALHOST, scaled

# ------------------------------------------------------------------------------------------------
# Metrics

def scrape_metrics(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{LOCALHOST}:{port}/metrics",
                                timeout=scaled(timeout)) as r:
        assert r.status == 200, f"GET /metrics: HTTP {r.status}"
        return r.read().decode()


_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of the sample `name` whose labels include `labels` (Prometheus text format), or
    None when there is no such sample."""
    want = labels or {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL_RE.findall(m.group(3) or ""))
        if all(have.get(k) == v for k, v in want.items()):
            return float(m.group(4))
    return None


