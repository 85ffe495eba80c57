"""The model server's Prometheus metrics, labelled by model version and traffic.

With several worker processes, each records into files of ``PROMETHEUS_MULTIPROC_DIR`` (set by
the server's ``main``; prometheus_client reads it too) and ``/metrics`` merges them (prometheus_client's
multiprocess mode).
"""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
BATCH_ROW_BUCKETS = (1, 5, 20, 100, 500, 2000, 10000)


class ServerMetrics:
    """Requests by status, latency, predicted classes, batch sizes, dropped log records."""

    def __init__(self, name: str, served: str, multiprocess: bool = False) -> None:
        """``multiprocess``: the server runs several worker processes (``prometheus_multiproc_dir`` set)."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.served, self.multiprocess = served, multiprocess
        # Labelled by version, and by traffic: live (through the front), shadow (a mirrored copy),
        # probe (a smoke test sent straight to this server).
        labels = ["status", "model_version", "traffic"]
        r = self.registry
        self.requests = Counter("mlcicd_requests", "Requests scored (or refused)", labels, registry=r)
        self.latency = Histogram(
            "mlcicd_request_seconds",
            "Latency of scoring requests",
            labels,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.classes = Counter(
            "mlcicd_predictions", "Predictions served", ["class_", "model_version", "traffic"], registry=r
        )
        self.batch_requests = Histogram(
            "mlcicd_batch_requests", "Requests per scoring call", registry=r, buckets=BATCH_REQUEST_BUCKETS
        )
        self.batch_rows = Histogram(
            "mlcicd_batch_rows", "Rows per scoring call", registry=r, buckets=BATCH_ROW_BUCKETS
        )
        self.dropped = Counter("mlcicd_prediction_log_dropped", "Prediction records dropped", registry=r)
        Gauge(
            "mlcicd_model_info",
            "The served model",
            ["model_name", "model_version"],
            registry=r,
            multiprocess_mode="max",
        ).labels(name, served).set(1)

    def request(self, status: str, traffic: str, seconds: float) -> None:
        self.requests.labels(status, self.served, traffic).inc()
        self.latency.labels(status, self.served, traffic).observe(seconds)

    def predictions(self, values: list[Any], traffic: str) -> None:
        counts: dict[str, int] = {}
        for v in values:
            counts[str(v)] = counts.get(str(v), 0) + 1
        for cls, n in counts.items():
            self.classes.labels(cls, self.served, traffic).inc(n)

    def batch(self, requests: int, rows: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)

    def page(self) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from starlette.responses import Response

        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
