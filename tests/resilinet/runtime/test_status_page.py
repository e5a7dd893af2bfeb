"""The live page at GET /, in headless Chromium: it shows every node of the chain as /status
reports it, and a killed node as dead, then up again after its restart."""
from __future__ import annotations

import os
import signal

import pytest

from lab.headless import HeadlessPage, unavailable
from rt_helpers import wait_all_up
from resilinet.runtime.service import Service

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


def shown(page: HeadlessPage, node: str) -> dict:
    return page.evaluate(f"(() => {{ const b = document.getElementById('node-{node}'); "
                         "return {state: b.dataset.state, restarts: Number(b.dataset.restarts), text: b.textContent}; })()")


def test_the_page_shows_a_killed_node_dead_then_up_again(deployments):
    model, router = deployments["resilinet"]
    wait_all_up(router)
    sup = router.supervisor
    svc = Service(router, model.input_shape, port=0,
                  info={"method": "resilinet", "run": "toy", "nodes_in_order": list(model.topology.chain),
                        "failure_prone": list(model.topology.failure_prone)}).start()
    host, port = svc.address
    try:
        with HeadlessPage(f"http://{host}:{port}/", timeout_s=60) as page:
            page.wait_for("document.body.dataset.ready === '1'")
            order = page.evaluate("[...document.querySelectorAll('.node')].map(b => b.id)")
            assert order == [f"node-{n}" for n in model.topology.chain]
            before = shown(page, "f2")
            assert before["state"] == "up" and before["restarts"] == sup.nodes["f2"].restarts
            os.kill(sup.nodes["f2"].pid, signal.SIGKILL)
            page.wait_for("document.getElementById('node-f2').dataset.state !== 'up'")
            assert "dead" in shown(page, "f2")["text"]
            page.wait_for("document.getElementById('node-f2').dataset.state === 'up'")
            assert shown(page, "f2")["restarts"] == before["restarts"] + 1
            assert not page.errors, page.errors
    finally:
        svc.stop()
