"""ResiliNet runtime (spec section 7): real distributed inference on Ray.

One Ray actor per physical node holds that node's partition (`node.py`); a router sends each
request IoT -> ... -> cloud along the topology (every hop's call made at once, refs passed
node to node), deciding per hop whether a producer is dead
(its call failed or missed that node's deadline, which follows its measured latency:
`deadlines.py`) and applying the method's rule (`router.py`); a supervisor health-checks the
nodes with a real forward pass and restarts crashed or hung ones (`supervisor.py`); `service.py`
is the HTTP endpoint (`http_app.py`: Starlette on uvicorn; `metrics.py`: Prometheus;
`status_page.html`: the live page), `chaos.py` the kill/hang load test (`chaos_timeline.py`: its plot).
`cluster.py` starts Ray on loopback only. Usage and design: docs/resilinet-runtime.md.
"""
