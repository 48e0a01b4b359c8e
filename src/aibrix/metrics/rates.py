"""Counter increases between scrapes, with Prometheus' reset handling, for metrics derived from counters."""

from __future__ import annotations

from collections import deque


class IncreaseTracker:
    """Remembers recent values of counter series and reports their increase over about ``window`` seconds.

    The reference point is the newest observation at least ``window`` old, or the oldest one kept when none is
    that old yet (so the first scrapes already give a rate over the time seen). A value lower than the previous
    one is a counter reset: the counter restarted from zero, so the new value is all increase, as in PromQL.
    """

    def __init__(self, window: float = 10.0, *, max_points: int = 128, forget_after: float = 600.0) -> None:
        self.window = window
        self.max_points = max_points
        self.forget_after = forget_after
        self._series: dict[str, deque[tuple[float, float]]] = {}

    def increase(self, key: str, value: float, now: float) -> tuple[float, float] | None:
        """Record ``value`` at ``now``; return (increase, seconds) over the window, or None with no history."""
        points = self._series.get(key)
        if points is None:
            points = self._series[key] = deque(maxlen=self.max_points)
        if points and now <= points[-1][0]:
            points.pop()  # same scrape seen twice, or a clock step back: keep the newest value only
        points.append((now, value))
        ref = 0
        for index in range(len(points) - 1, -1, -1):
            if points[index][0] <= now - self.window:
                ref = index
                break
        for _ in range(ref):
            points.popleft()
        if len(points) < 2:
            return None
        total = 0.0
        previous = points[0][1]
        for _, current in list(points)[1:]:
            total += current - previous if current >= previous else current
            previous = current
        return total, now - points[0][0]

    def forget_stale(self, now: float) -> None:
        """Drop series not seen for ``forget_after`` seconds (engines restarted, label sets gone)."""
        stale = [key for key, points in self._series.items() if points and points[-1][0] < now - self.forget_after]
        for key in stale:
            del self._series[key]
