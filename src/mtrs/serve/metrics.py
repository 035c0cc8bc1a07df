"""Prometheus metrics of one app, in a registry of its own (apps never share counters)."""

from __future__ import annotations

from mtrs.errors import MtrsUserError

try:  # the serve extra
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ModuleNotFoundError as err:
    raise MtrsUserError(f"mtrs serve needs {err.name}: pip install 'mtrs[serve]'") from None

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]


class ServiceMetrics:
    """Request counts by endpoint, method and status; latency per endpoint; reloads; events."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mtrs_http_requests",
            "HTTP requests by endpoint (route template), method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mtrs_http_request_seconds",
            "Time to answer a request, by endpoint (route template).",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reloads = Counter(
            "mtrs_model_reloads",
            "Model reloads by outcome (ok, refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.events = Counter("mtrs_events", "Events posted to /v1/events.", registry=self.registry)
        self.event_users = Gauge(
            "mtrs_event_users", "Users with served events in memory.", registry=self.registry
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
