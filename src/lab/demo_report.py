"""One combined report for `make demo`: each study's own part, one after the other.

    python -m lab.demo_report runs/demo        # writes runs/demo/REPORT.md

The Makefile runs `binding reproduce --out DEMO/binding` and `resilinet reproduce --out
DEMO/resilinet`; each package's report module knows its own folder layout (`demo_section`). This
module is the one place that joins the two studies, so it is the one lab module that imports them.
"""
from __future__ import annotations

import sys
from pathlib import Path


def write(demo: Path) -> Path:
    from binding.report import demo_section as binding_section
    from resilinet.report import demo_section as resilinet_section

    text = ["# Demo report", "", "Produced by `make demo` (the `cpu` presets of both studies). "
            "The papers' numbers and the measured ones are compared in docs/RESULTS.md (one page per study section in docs/results/).", "",
            *binding_section(demo, demo / "binding"), *resilinet_section(demo, demo / "resilinet")]
    out = demo / "REPORT.md"
    demo.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text) + "\n")
    return out


if __name__ == "__main__":
    print(f"-> {write(Path(sys.argv[1] if len(sys.argv) > 1 else 'runs/demo'))}")
