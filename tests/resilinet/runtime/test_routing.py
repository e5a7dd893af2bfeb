"""Routing with real failures: nodes are stopped (SIGSTOP: the process is there but silent, so
its consumers' per-hop deadline fires) or killed (SIGKILL); the answers must equal the simulated
model under the same alive mask, for every method and every pattern."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

from rt_helpers import HOP_DEADLINE_S, wait_all_up
from resilinet.hyperconnections import METHODS
from resilinet.runtime.cluster import external_sockets, listening_sockets
from resilinet.runtime.router import Router
from resilinet.topology import AliveMask

X = torch.randn(6, 12, generator=torch.Generator().manual_seed(0))


@contextmanager
def stopped(router, nodes):
    """SIGSTOP the processes of `nodes` for the duration of the block, then SIGCONT them."""
    pids = [router.supervisor.nodes[n].pid for n in nodes]
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
        wait_all_up(router)


def test_every_ray_socket_listens_on_loopback_only(deployments):
    socks = listening_sockets()
    assert len(socks) >= 3, socks  # gcs, raylet, workers at least
    assert external_sockets() == [], external_sockets()


@pytest.mark.parametrize("method", list(METHODS))
def test_every_alive_pattern_matches_the_simulation(deployments, method):
    model, router = deployments[method]
    topo = model.topology
    wait_all_up(router)
    for pattern in topo.patterns():
        dead = [n for n, a in zip(topo.failure_prone, pattern) if not a]
        with stopped(router, dead):
            ans = router.predict(X)
        want = model(X, AliveMask.from_pattern(topo, pattern).floats())
        assert ans.alive == {n: bool(a) for n, a in zip(topo.failure_prone, pattern)}, (pattern, ans.dead_reason)
        assert torch.allclose(ans.logits, want, atol=1e-5, rtol=0), (method, pattern)
        assert ans.connected == topo.connected(pattern)
        if ans.connected:
            assert ans.predictions == want.argmax(1).tolist()


def test_vanilla_has_no_path_when_any_node_is_dead(deployments):
    model, router = deployments["vanilla"]
    for node in model.topology.failure_prone:
        with stopped(router, [node]):
            ans = router.predict(X)
        assert not ans.connected and ans.to_json()["guessed"], node


@pytest.mark.parametrize("method", ["resilinet", "deepfogguard", "resilinet+"])
def test_dead_edge_routes_through_skip(deployments, method):
    """With e dead, f2 still gets the IoT's skip input, so the cloud is reached and the answer is
    not the all-zeros one."""
    model, router = deployments[method]
    with stopped(router, ["e"]):
        ans = router.predict(X)
    assert ans.connected and ans.alive["e"] is False
    zeros = model(X, {"e": 0.0, "f2": 0.0})  # f2 dead too would cut the skip path
    assert not torch.allclose(ans.logits, zeros)


def test_hung_node_is_dead_after_the_hop_deadline_then_routed_around(deployments):
    model, router = deployments["resilinet"]
    wait_all_up(router)
    with stopped(router, ["f1"]):
        t0 = time.perf_counter()
        first = router.predict(X)
        first_s = time.perf_counter() - t0
        assert first.dead_reason == {"f1": "deadline"}
        assert HOP_DEADLINE_S <= first_s < HOP_DEADLINE_S + 1.0
        t_wait = time.monotonic()  # the health check flags it within its own deadline
        while router.supervisor.nodes["f1"].state != "hung":
            assert time.monotonic() - t_wait < 5
            time.sleep(0.05)
        t0 = time.perf_counter()
        later = router.predict(X)
        assert later.dead_reason == {"f1": "hung"}
        assert time.perf_counter() - t0 < HOP_DEADLINE_S  # no deadline paid once it is known hung
    assert torch.allclose(first.logits, model(X, {"f1": 0.0}), atol=1e-5, rtol=0)
    assert router.predict(X).alive == {"f1": True, "f2": True, "e": True}  # back after SIGCONT


def test_killed_node_restarts_and_rejoins_without_restarting_the_service(deployments):
    model, router = deployments["deepfogguard"]
    wait_all_up(router)
    sup = router.supervisor
    old_pid, restarts, other = sup.nodes["f2"].pid, sup.nodes["f2"].restarts, sup.nodes["cloud"].pid
    os.kill(old_pid, signal.SIGKILL)
    ans = router.predict(X)  # routed around at once: the call fails, no deadline to wait
    assert ans.alive["f2"] is False and ans.dead_reason["f2"] in ("failed", "down", "starting")
    assert torch.allclose(ans.logits, model(X, {"f2": 0.0}), atol=1e-5, rtol=0)
    wait_all_up(router)
    assert sup.nodes["f2"].restarts == restarts + 1 and sup.nodes["f2"].pid != old_pid
    assert sup.nodes["cloud"].pid == other  # nothing else was restarted
    back = router.predict(X)
    assert back.alive["f2"] is True
    assert torch.allclose(back.logits, model(X), atol=1e-5, rtol=0)


def test_hung_node_is_replaced_after_hung_restart_s(deployments):
    model, router = deployments["resilinet+"]
    wait_all_up(router)
    sup = router.supervisor
    old_pid, restarts = sup.nodes["e"].pid, sup.nodes["e"].restarts
    sup.cfg = replace(sup.cfg, hung_restart_s=0.5)   # RuntimeConfig is frozen: the supervisor gets a new one
    try:
        os.kill(old_pid, signal.SIGSTOP)  # never continued: the supervisor must kill it
        t0 = time.monotonic()
        while sup.nodes["e"].restarts == restarts:
            assert time.monotonic() - t0 < 10, sup.status()
            time.sleep(0.05)
        wait_all_up(router)
    finally:
        sup.cfg = replace(sup.cfg, hung_restart_s=600.0)
    assert sup.nodes["e"].pid != old_pid
    assert router.predict(X).alive["e"] is True


def test_health_status_reports_pids_restarts_and_latency(deployments):
    model, router = deployments["resilinet"]
    router.predict(X)
    st = router.supervisor.status()
    assert set(st) == set(model.topology.chain)
    for s in st.values():
        assert s["state"] == "up" and isinstance(s["pid"], int) and s["requests_served"] >= 1
        assert s["latency_ms"]["p50"] > 0


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(deployments):
    model, shared = deployments["resilinet"]
    router = Router(model, torch.full((4,), 0.25), supervisor=shared.supervisor, key="resilinet").start()
    try:
        xs = [torch.randn(k + 1, 12, generator=torch.Generator().manual_seed(k)) for k in range(12)]
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(router.predict, xs))
    finally:
        router.stop()  # the batcher only: the shared node processes keep running
    for x, ans in zip(xs, answers):
        assert ans.logits.shape[0] == x.shape[0] and len(ans.predictions) == x.shape[0]
        assert torch.allclose(ans.logits, model(x), atol=1e-5, rtol=0)
    assert all(s.state == "up" for s in shared.supervisor.nodes.values())


def test_the_raw_input_reaches_the_edge_from_the_router_or_through_the_iot_alike(deployments):
    """The MLP's IoT link to e carries the input unchanged: the router sends it itself by default
    (`input_direct`); relayed through the IoT process instead, every answer is the same."""
    model, direct = deployments["resilinet"]
    relayed = Router(model, torch.full((4,), 0.25), supervisor=direct.supervisor, key="resilinet")
    relayed.direct = ()                 # as with RuntimeConfig(input_direct=False)
    assert direct.direct == ("e",)
    wait_all_up(direct)
    for dead in ([], ["e"], ["f2"]):
        with stopped(direct, dead):
            a, b = direct.predict(X), relayed.predict(X)
        want = model(X, {n: 0.0 for n in dead})
        assert a.alive == b.alive and a.alive == {n: n not in dead for n in model.topology.failure_prone}
        assert torch.equal(a.logits, b.logits) and torch.allclose(a.logits, want, atol=1e-5, rtol=0), dead


def test_hops_routed_around_are_counted_per_node_by_why(deployments):
    model, router = deployments["resilinet"]
    sup = router.supervisor
    wait_all_up(router)
    before = {n: dict(sup.nodes[n].routed_around) for n in ("f1", "e")}
    with stopped(router, ["f1"]):
        assert router.predict(X).dead_reason == {"f1": "deadline"}
        t0 = time.monotonic()
        while sup.nodes["f1"].state != "hung":
            assert time.monotonic() - t0 < 10, sup.status()
            time.sleep(0.05)
        assert router.predict(X).dead_reason == {"f1": "hung"}
    os.kill(sup.nodes["e"].pid, signal.SIGKILL)
    assert router.predict(X).dead_reason["e"] in ("failed", "down", "starting")
    wait_all_up(router)
    after = {n: sup.status()[n]["routed_around"] for n in ("f1", "e")}
    assert after["f1"] == {**before["f1"], "deadline": before["f1"]["deadline"] + 1, "hung": before["f1"]["hung"] + 1}
    assert after["e"] == {**before["e"], "dead": before["e"]["dead"] + 1}


def test_a_node_measured_slow_is_waited_for_and_the_same_stall_is_a_death_at_the_floor(deployments):
    """Slow is not dead: f2 stalls for 0.5 s (SIGSTOP, then SIGCONT), longer than the 0.3 s floor.
    With its hops measured at 0.4 s its deadline is 3 x 0.4 s and it is waited for; with no
    history (the fixed deadline of before) the same stall counts it dead."""
    import threading

    from resilinet.runtime.deadlines import HopDeadline

    model, router = deployments["resilinet"]
    sup = router.supervisor
    node, saved = sup.nodes["f2"], sup.nodes["f2"].deadline
    answers = {}
    try:
        for history in ("slow", "none"):
            wait_all_up(router)
            node.deadline = HopDeadline(HOP_DEADLINE_S, 5.0, 0.99, 3.0, 100)
            if history == "slow":
                for _ in range(20):
                    node.deadline.observe(0.4)
            pid = node.pid
            os.kill(pid, signal.SIGSTOP)
            resume = threading.Timer(0.5, os.kill, (pid, signal.SIGCONT))
            resume.start()
            try:
                answers[history] = router.predict(X)
            finally:
                resume.join()
    finally:
        node.deadline = saved
        wait_all_up(router)
    assert answers["slow"].alive["f2"] is True and answers["slow"].dead_reason == {}
    assert torch.allclose(answers["slow"].logits, model(X), atol=1e-5, rtol=0)
    assert answers["none"].dead_reason == {"f2": "deadline"}
