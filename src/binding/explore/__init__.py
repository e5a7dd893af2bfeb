"""The binding explorer: one self-contained HTML page to look at a trained model example by example.

    binding explore --run runs/t0 --out runs/t0/explore [--run2 RUN2]

Files, one concern each: inputs.py (the runs and the checks on what was given), examples.py (which
held-out examples), readings.py (predictions, attention, logit lens), patching.py (the example's
interchange interventions), probing.py (analyze's probes, refitted), slices.py (accuracy by N and
slot), image_twin.py (image contexts beside their text twins), page.py (the HTML file; page.html,
page.css, page.js are its template), build.py (`explore`, putting them together), regimes.py
(a page per regime for `binding reproduce`). Its test and benchmarks/explore_page_load.py open the
page in headless Chromium with lab/headless.py (shared with the ResiliNet service's page test).
"""
