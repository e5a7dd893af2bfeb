"""How fast an explorer page opens (issue 20: "under a second"): each page loaded in headless
Chromium several times, from the file system, each time in a fresh browser.

    .venv/bin/python benchmarks/explore_page_load.py runs/cur/explore-text/index.html runs/cur/explore-image-text/index.html
    # table + benchmarks/results/explore_page_load.json

"ready" is the page's own mark (`document.body.dataset.readyMs`, performance.now() since navigation
started) once the first example is drawn, attention included: the time until the page is usable.
"DOMContentLoaded" is when the HTML (data included) is parsed. Browser start-up is not counted.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from lab.headless import HeadlessPage
from lab.errors import UserError, run_cli
from lab.io import atomic_write_json
from lab.report import md_table


def load_once(page: Path) -> dict:
    with HeadlessPage(page.resolve().as_uri()) as p:
        p.wait_for("document.body.dataset.ready === '1'")
        dom = p.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        ready = float(p.evaluate("document.body.dataset.readyMs"))
        return {"dom_content_loaded_ms": round(dom, 1), "ready_ms": ready, "errors": p.errors}


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pages", nargs="+", help="index.html files written by `binding explore`")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/explore_page_load.json")
    args = ap.parse_args(argv)
    rows, out = [], []
    for page in map(Path, args.pages):
        if not page.is_file():
            raise UserError(f"{page}: no such page; write one with `binding explore --run RUN --out DIR`")
        runs = [load_once(page) for _ in range(args.repeats)]
        ready = [r["ready_ms"] for r in runs]
        dom = [r["dom_content_loaded_ms"] for r in runs]
        out.append({"page": str(page), "bytes": page.stat().st_size, "loads": runs})
        rows.append([str(page), f"{page.stat().st_size / 1e6:.2f}", f"{statistics.median(dom):.0f}",
                     f"{statistics.median(ready):.0f}", f"{max(ready):.0f}", sum(len(r["errors"]) for r in runs)])
    print(md_table(["page", "MB", "DOMContentLoaded ms (median)", "ready ms (median)", "ready ms (max)",
                    "JS errors"], rows))
    atomic_write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(_main))
