"""Prometheus metrics (prometheus_client), one registry per server.

Served at GET /metrics in the text exposition format. Names and labels are
listed in docs/SERVER.md.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
WAIT_BUCKETS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("realm_requests", "API requests by tenant, model, endpoint and HTTP status",
                                ["tenant", "model", "endpoint", "status"], registry=r)
        self.latency = Histogram("realm_request_duration_seconds", "Time from request to its last byte",
                                 ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("realm_time_to_first_token_seconds", "Time from request to its first generated token",
                              ["model", "endpoint"], buckets=TTFT_BUCKETS, registry=r)
        self.prompt_tokens = Counter("realm_prompt_tokens", "Prompt tokens processed (including cached ones)",
                                     ["tenant", "model"], registry=r)
        self.cached_tokens = Counter("realm_cached_prompt_tokens", "Prompt tokens reused from a session's KV cache",
                                     ["tenant", "model"], registry=r)
        self.generated_tokens = Counter("realm_generated_tokens", "Tokens generated",
                                        ["tenant", "model"], registry=r)
        self.tokens_per_second = Gauge("realm_tokens_per_second",
                                       "Generated tokens per second over the last few seconds, all sessions",
                                       ["model"], registry=r)
        self.request_tps = Histogram("realm_request_tokens_per_second", "Per-request decode speed",
                                     ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.queue_depth = Gauge("realm_queue_depth", "Requests waiting for a session", ["model"], registry=r)
        self.active = Gauge("realm_active_requests", "Requests holding a session (prefill or decode)",
                            ["model"], registry=r)
        self.sessions = Gauge("realm_sessions", "Sessions (KV caches) alive, busy or idle", ["model"], registry=r)
        self.model_memory = Gauge("realm_model_memory_bytes",
                                  "Linear memory of the model's wasm instance (weights + every session)",
                                  ["model"], registry=r)
        self.model_weights = Gauge("realm_model_weights_bytes", "Bytes of weights (one copy, shared by all tenants)",
                                   ["model"], registry=r)
        self.in_flight = Gauge("realm_in_flight_requests", "Requests being served (all endpoints)", registry=r)
        self.rate_limited = Counter("realm_rate_limited", "Requests refused by a rate limit",
                                    ["tenant", "limit"], registry=r)
        self.cancelled = Counter("realm_cancelled", "Generations cancelled (client gone or cancel message)",
                                 ["model", "reason"], registry=r)
        self.spec_drafted = Counter("realm_speculative_drafted_tokens", "Draft tokens verified by the target model",
                                    ["model"], registry=r)
        self.spec_accepted = Counter("realm_speculative_accepted_tokens", "Draft tokens the target model accepted",
                                     ["model"], registry=r)
        self.batch_sessions = Histogram("realm_batch_sessions", "Sessions advanced by one forward pass (batch size)",
                                        ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_tokens = Histogram("realm_batch_tokens", "Tokens (decode + prompt) in one forward pass",
                                      ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_steps = Counter("realm_batch_steps", "Forward passes run by the scheduler", ["model"], registry=r)
        self.queue_wait = Histogram("realm_queue_wait_seconds", "Time from a request's arrival to getting a session",
                                    ["model"], buckets=WAIT_BUCKETS, registry=r)
        self.cost = Counter("realm_cost_usd", "Cost of the tokens served, from the price table (USD)",
                            ["tenant", "model"], registry=r)
        self.usage_errors = Counter("realm_usage_write_errors", "Finished requests whose usage row could not be written",
                                    registry=r)
        self.ws_connections = Gauge("realm_websocket_connections", "Open /v1/stream connections", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
