"""GET /metrics: the service's Prometheus metrics through `prometheus_client`, one registry per
service (so two services in one process, as in the tests, do not share counters), in the text
format by construction.

    resilinet_requests_total{code}                 HTTP answers by status code
    resilinet_examples_total                       examples answered
    resilinet_request_latency_seconds              histogram of request latency (router's clock)
    resilinet_answers_with_dead_nodes_total{node}  answers computed with `node` dead
    resilinet_node_up{node}                        1 when the node's state is up
    resilinet_node_state{node,state}               1 for the node's current state
    resilinet_node_restarts_total{node}            process restarts
    resilinet_node_requests_total{node}            routed hops the node answered
    resilinet_node_routed_around_total{node,reason}   hops routed around it: deadline / dead / hung
    resilinet_node_deadline_seconds{node}          its hop deadline now (it follows its latency)
    resilinet_node_hop_latency_seconds{node,quantile}  p50 / p90 / p99 of its recent hop latencies
Node figures are read from the supervisor when scraped (a collector), not copied on every request.
"""
from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# No `*_created` series (a gauge per counter with its creation time): they double the text for
# nothing a scraper of this service needs. This is prometheus_client's process-wide switch.
disable_created_metrics()

STATES = ("starting", "up", "down", "hung")
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, service):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("resilinet_requests", "HTTP answers by status code", ["code"], registry=self.registry)
        self.examples = Counter("resilinet_examples", "examples answered", registry=self.registry)
        self.latency = Histogram("resilinet_request_latency_seconds", "request latency (queue + route)",
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.dead = Counter("resilinet_answers_with_dead_nodes", "answers computed with this node dead", ["node"],
                            registry=self.registry)
        self.registry.register(NodeCollector(service.router.supervisor))

    def observe(self, answer, examples: int) -> None:
        self.examples.inc(examples)
        self.latency.observe(answer.latency_ms / 1e3)
        for node, alive in answer.alive.items():
            if not alive:
                self.dead.labels(node=node).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)


class NodeCollector:
    """The supervisor's view of every node process, at scrape time."""

    def __init__(self, supervisor):
        self.supervisor = supervisor

    def describe(self):
        return []   # families are only known when collected

    def collect(self):
        up = GaugeMetricFamily("resilinet_node_up", "1 when the node is up", labels=["node"])
        state = GaugeMetricFamily("resilinet_node_state", "1 for the node's current state", labels=["node", "state"])
        restarts = CounterMetricFamily("resilinet_node_restarts", "node process restarts", labels=["node"])
        served = CounterMetricFamily("resilinet_node_requests", "routed hops the node answered", labels=["node"])
        around = CounterMetricFamily("resilinet_node_routed_around", "hops routed around the node, by why",
                                     labels=["node", "reason"])
        deadline = GaugeMetricFamily("resilinet_node_deadline_seconds", "the node's hop deadline now", labels=["node"])
        hop = GaugeMetricFamily("resilinet_node_hop_latency_seconds", "quantiles of the node's recent hop latencies",
                                labels=["node", "quantile"])
        for n, s in self.supervisor.status().items():
            up.add_metric([n], int(s["state"] == "up"))
            for st in STATES:
                state.add_metric([n, st], int(s["state"] == st))
            restarts.add_metric([n], s["restarts"])
            served.add_metric([n], s["requests_served"])
            for reason, count in s["routed_around"].items():
                around.add_metric([n, reason], count)
            if s["deadline_s"] is not None:
                deadline.add_metric([n], s["deadline_s"])
            for q, key in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")):
                if s["latency_ms"]:
                    hop.add_metric([n, q], s["latency_ms"][key] / 1e3)
        yield from (up, state, restarts, served, around, deadline, hop)
