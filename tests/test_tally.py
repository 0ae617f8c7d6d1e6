"""tally: a scrape shows Tally and TallyHistogram exactly as prometheus_client's own
Counter and Histogram, fed the same counts."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from authgw.tally import Tally, TallyHistogram

LABELS = [("r", "injected"), ("r", "injected"), ("-", "passthrough"), ('a"b\\c\n', "rejected")]
# on, between and beyond the default buckets' bounds
SECONDS = [0.0, 0.005, 0.0051, 0.25, 7.5, 10.0, 11.0, 1e9, 0.0001]

disable_created_metrics()  # type: ignore[no-untyped-call]  # as Metrics() does


def test_a_tally_scrapes_as_a_counter() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("authgw_requests", "Requests", ["route", "outcome"], registry=theirs)
    tally = Tally("authgw_requests", "Requests", ["route", "outcome"], registry=ours)
    for labels in LABELS:
        counter.labels(*labels).inc()
        tally.add(labels)
    counter.labels("r", "injected").inc(2.5)
    tally.add(("r", "injected"), 2.5)
    assert generate_latest(ours) == generate_latest(theirs)


def test_a_tally_histogram_scrapes_as_a_histogram() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("authgw_up", "Upstream time", ["route", "error_type"], registry=theirs)
    tally = TallyHistogram("authgw_up", "Upstream time", ["route", "error_type"], registry=ours)
    for i, seconds in enumerate(SECONDS):
        labels = ("r", "none") if i % 3 else ("s", "timeout")
        histogram.labels(*labels).observe(seconds)
        tally.observe(labels, seconds)
    text = generate_latest(ours)
    assert text == generate_latest(theirs)
    assert b'le="0.005",route="r"' in text or b'le="0.005",route="s"' in text


def test_nothing_counted_shows_the_metric_without_series() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    Counter("authgw_hits", "Hits", ["route"], registry=theirs)
    Tally("authgw_hits", "Hits", ["route"], registry=ours)
    assert generate_latest(ours) == generate_latest(theirs)
