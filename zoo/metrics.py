"""The service's Prometheus metrics (prometheus_client), served at ``GET /metrics``.

Every app owns its registry (no process-global state). When the service runs several worker
processes (``automl serve --workers N``), ``PROMETHEUS_MULTIPROC_DIR`` names a folder they share and
``/metrics`` of any worker reports the sum over all of them (prometheus_client's multiprocess mode).
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

#: Latency buckets (seconds): the 50 ms target sits on a boundary.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """Request counts and latency by endpoint, load shed, write batches, refits, experience size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("automl_zoo_http_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("automl_zoo_http_request_seconds", "time to answer, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.shed = Counter("automl_zoo_shed_requests", "requests refused with 503 because too many were in flight",
                            registry=r)
        self.in_flight = Gauge("automl_zoo_requests_in_flight", "requests being answered",
                               multiprocess_mode="livesum", registry=r)
        self.write_batch = Histogram("automl_zoo_write_batch_records", "records per committed write transaction",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.write_seconds = Histogram("automl_zoo_write_batch_seconds", "time to commit one write transaction",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.refits = Counter("automl_zoo_predictor_refits", "predictor refits (successful ones)", registry=r)
        self.refit_failures = Counter("automl_zoo_predictor_refit_failures", "refits that failed (previous kept)",
                                      registry=r)
        self.refit_seconds = Histogram("automl_zoo_predictor_refit_seconds", "time of one refit",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.experience = Gauge("automl_zoo_experience_records", "experience records the predictor learned from",
                                multiprocess_mode="max", registry=r)
        self.predictor_version = Gauge("automl_zoo_predictor_version",
                                       "id of the newest stored outcome the predictor learned from",
                                       multiprocess_mode="max", registry=r)

    def on_commit(self, records: int, seconds: float) -> None:
        self.write_batch.observe(records)
        self.write_seconds.observe(seconds)

    def on_refit(self, experience: int, version: int, seconds: float, ok: bool) -> None:
        if not ok:
            self.refit_failures.inc()
            return
        self.refits.inc()
        self.refit_seconds.observe(seconds)
        self.experience.set(experience)
        self.predictor_version.set(version)

    def render(self) -> tuple[bytes, str]:
        """The exposition text (all workers' sum in multiprocess mode) and its content type."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
