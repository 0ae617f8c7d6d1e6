"""The counters every request moves, kept as plain numbers and read at scrape time.

A ``prometheus_client`` child's ``inc()`` checks its arguments and takes a lock (about
0.3 us), ``observe()`` about 0.7 us; per request the gateway counts the request, the
cache hit and the upstream time, which made these 19 k of the 222 k instructions the
gateway's hooks spent on a request (``docs/decisions.md``). Here a count is a dict
update on mitmproxy's event loop, the only thread that counts them and the one the
metrics port is served from (``statusport.py``), so nothing is locked.

``Tally`` and ``TallyHistogram`` are collectors in the gateway's registry: a scrape
shows them exactly as ``Counter`` and ``Histogram`` would (``_total``; ``_bucket``,
``_count``, ``_sum`` with prometheus_client's default buckets).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


def _le(bound: float) -> str:
    """A bucket's ``le`` label as prometheus_client writes it."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


class Tally(Collector):
    """A counter by label values: ``add(("route", "injected"))``."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.counts: dict[Labels, float] = {}
        registry.register(self)

    def add(self, labels: Labels, amount: float = 1.0) -> None:
        counts = self.counts
        counts[labels] = counts.get(labels, 0.0) + amount

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.counts.items()):
            family.add_metric(labels, value)
        yield family


class TallyHistogram(Collector):
    """A histogram by label values: ``observe(("route", "none"), seconds)``."""

    BUCKETS: tuple[float, ...] = tuple(Histogram.DEFAULT_BUCKETS[:-1])  # and +Inf

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        # per label values: a count per bucket (the last one +Inf), then the sum
        self.series: dict[Labels, list[float]] = {}
        registry.register(self)

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.BUCKETS) + 2)
        series[bisect_left(self.BUCKETS, value)] += 1  # a bound is "less than or equal"
        series[-1] += value

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        bounds = [*map(_le, self.BUCKETS), "+Inf"]
        for labels, series in list(self.series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(bounds, series[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(labels, buckets, sum_value=series[-1])
        yield family
