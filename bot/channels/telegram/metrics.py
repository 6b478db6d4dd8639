"""Prometheus metrics in the text exposition format (no client library needed)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Counters and a latency histogram for the bot; `render()` gives /metrics text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.updates: Counter[str] = Counter()  # by kind
        self.replies = 0
        self.dispositions: Counter[tuple[str, str]] = Counter()  # (disposition, rule)
        self.errors: Counter[str] = Counter()  # by kind
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def update(self, kind: str) -> None:
        with self._lock:
            self.updates[kind] += 1

    def reply(self, n: int = 1) -> None:
        with self._lock:
            self.replies += n

    def disposition(self, disposition: str, rule: str | None) -> None:
        with self._lock:
            self.dispositions[(disposition, rule or "")] += 1

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def latency(self, seconds: float) -> None:
        with self._lock:
            self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP triage_updates_total Telegram updates received, by kind.",
                "# TYPE triage_updates_total counter",
            ]
            lines += [f'triage_updates_total{{kind="{k}"}} {v}'
                      for k, v in sorted(self.updates.items())]
            lines += [
                "# HELP triage_replies_total Messages sent or edited for patients.",
                "# TYPE triage_replies_total counter",
                f"triage_replies_total {self.replies}",
                "# HELP triage_dispositions_total Conversations that reached a disposition.",
                "# TYPE triage_dispositions_total counter",
            ]
            lines += [f'triage_dispositions_total{{disposition="{d}",rule="{r}"}} {v}'
                      for (d, r), v in sorted(self.dispositions.items())]
            lines += [
                "# HELP triage_errors_total Errors while handling updates, by kind.",
                "# TYPE triage_errors_total counter",
            ]
            lines += [f'triage_errors_total{{kind="{k}"}} {v}'
                      for k, v in sorted(self.errors.items())]
            lines += [
                "# HELP triage_update_seconds Time from receiving an update to the last reply.",
                "# TYPE triage_update_seconds histogram",
            ]
            acc = 0
            for bound, n in zip(BUCKETS, self.buckets, strict=False):
                acc += n
                lines.append(f'triage_update_seconds_bucket{{le="{bound}"}} {acc}')
            acc += self.buckets[-1]
            lines.append(f'triage_update_seconds_bucket{{le="+Inf"}} {acc}')
            lines.append(f"triage_update_seconds_sum {self.latency_sum:.6f}")
            lines.append(f"triage_update_seconds_count {self.latency_count}")
        return "\n".join(lines) + "\n"
