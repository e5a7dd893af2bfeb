"""`binding reproduce`: every regime of spec §4, text-only evaluation per N, the table and the figure.

    binding reproduce --preset cpu --out runs/repro            # one seed per regime (the cpu preset)

Jobs run as `binding curriculum` subprocesses, `--workers` at a time (one torch thread each), in
dependency order: the text stage first (text-only), then the regimes that extend it. The
equal-compute control needs the other regimes' step counts; it starts once the text stage is done,
beside the workers, trains up to the other regimes' progress and waits there until the longest
one's total is known (`--follow`, binding/longest.py), so it trains alongside them instead of
alone at the end. Each regime's mechanism analysis is a job of its own, run once the regime is
trained, on a worker the training leaves idle (`binding curriculum --analyze`). Regimes that
share a prefix share its stage folders, so the text stage is trained once per seed. The embedded
encoder is pretrained once into OUT/encoder. Rerunning the command resumes: finished stages are
kept and an interrupted one continues from its checkpoint. Writes

    OUT/table.json     one entry per regime: regime, seeds, id_accuracy_mean, ood_accuracy_mean,
                       ood_accuracy_sd (over seeds), accuracy_by_n_mean, run_dirs
    OUT/report.md      the table beside the paper's numbers
    OUT/accuracy_by_n.png
    OUT/logs/*.log     each job's output
    OUT/mechanism.json, OUT/mechanism_by_regime.png   the mechanism of every regime's final model
                       (`binding analyze`, per model in OUT/seedS/<regime>/mechanism/; --no-analysis skips it)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lab.errors import UserError
from lab.io import atomic_write_json, read_json
from lab.report import md_table, mean_sd

from .plots import plot_accuracy_by_n

PAPER_OOD = {"text-only": 37.2, "noise-text": 57.5, "image-text": 69.5, "noise-image-text": 83.6}
SEEDS = {"smoke": 1, "cpu": 1, "paper": 4}
REGIME_ORDER = ("text-only", "noise-text", "noise-image-text", "image-text", "mixed-from-start",
                "text-only-equal-compute")   # also the scheduling priority (critical path first)
DEPENDS = {"text-only": [], "noise-text": ["text-only"], "image-text": ["text-only", "@encoder"],
           "noise-image-text": ["noise-text", "@encoder"], "mixed-from-start": ["@encoder"],
           "text-only-equal-compute": [r for r in REGIME_ORDER if r != "text-only-equal-compute"]}
# Followers start once these are done, beside the `--workers` jobs (not counted among them): the
# control trains up to the other regimes' progress and waits there (`binding curriculum --follow`)
FOLLOWERS = {"text-only-equal-compute": ["text-only"]}


ANALYZE = "@analyze:"   # job ("@analyze:<regime>", seed): the mechanism analysis of that regime's final model


def _kind(job: tuple[str, int]) -> tuple[str, str]:
    """("encoder", "") | ("train", regime) | ("analyze", regime)."""
    if job[0] == "@encoder":
        return "encoder", ""
    if job[0].startswith(ANALYZE):
        return "analyze", job[0][len(ANALYZE):]
    return "train", job[0]


def _command(preset: str, out: Path, overrides: list[str], job: tuple[str, int]) -> list[str]:
    cmd = [sys.executable, "-m", "binding.cli", "curriculum", "--preset", preset, "--out", str(out), "--quiet"]
    kind, regime = _kind(job)
    if kind == "encoder":
        cmd += ["--encoder-only"]
    else:   # an analysis job's regime is trained: the curriculum reuses every stage, then analyses
        cmd += ["--regime", regime, "--seed", str(job[1])] + (["--analyze"] if kind == "analyze" else [])
        cmd += ["--follow"] if kind == "train" and regime in FOLLOWERS else []
    return cmd + list(overrides)


def _job_name(job: tuple[str, int]) -> str:
    kind, regime = _kind(job)
    return {"encoder": "encoder", "train": f"{regime}-seed{job[1]}", "analyze": f"analyze-{regime}-seed{job[1]}"}[kind]


def _priority(job: tuple[str, int]) -> tuple:
    """Encoder first, then training in REGIME_ORDER (critical path first), analyses last: they fill
    workers the training leaves idle (e.g. while the equal-compute control runs alone)."""
    kind, regime = _kind(job)
    return ("encoder", "train", "analyze").index(kind), REGIME_ORDER.index(regime) if regime else 0, job[1]


def _is_follower(job: tuple[str, int]) -> bool:
    kind, regime = _kind(job)
    return kind == "train" and regime in FOLLOWERS


def _doomed(job: tuple[str, int], jobs: dict, failed: list) -> bool:
    """Whether the job failed or waits (directly or not) on one that did."""
    return job in failed or any(_doomed(d, jobs, failed) for d in jobs[job])


def run_jobs(preset: str, out: Path, seeds: list[int], overrides: list[str], workers: int, quiet: bool,
             analysis: bool = False) -> None:
    jobs = {("@encoder", 0): []} | {(r, s): [(d, 0 if d == "@encoder" else s) for d in DEPENDS[r]]
                                     for s in seeds for r in REGIME_ORDER}
    if analysis:
        jobs |= {(ANALYZE + r, s): [(r, s)] for s in seeds for r in REGIME_ORDER}
    start_after = {j: [(d, j[1]) for d in FOLLOWERS[j[0]]] if _is_follower(j) else deps for j, deps in jobs.items()}
    done, running, failed = set(), {}, []
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.time()

    def say(text: str) -> None:
        if not quiet:
            print(f"[{time.time() - t0:6.0f}s] {text}", flush=True)

    while len(done) + len(failed) < len(jobs):
        ready = [j for j in jobs if j not in done and j not in running and j not in failed
                 and all(d in done for d in start_after[j])]
        ready.sort(key=_priority)
        for job in ready:
            follower = _is_follower(job)
            if sum(_is_follower(j) == follower for j in running) >= workers:
                continue
            name = _job_name(job)
            log = open(out / "logs" / f"{name}.log", "w")
            cmd = _command(preset, out, overrides, job)
            running[job] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log, name)
            say(f"start {name}" + (" (follows the other regimes of its seed)" if follower else ""))
        if not running:
            blocked = [j for j in jobs if j not in done and j not in failed]
            failed += blocked   # their dependencies failed
            break
        time.sleep(1.0)
        for job, (proc, log, name) in list(running.items()):
            if proc.poll() is None and _is_follower(job) and _doomed(job, jobs, failed):
                proc.kill()   # what it follows failed: it would wait for ever
                proc.wait()
            if proc.poll() is None:
                continue
            log.close()
            del running[job]
            (done.add(job) if proc.returncode == 0 else failed.append(job))
            say(f"{'done' if proc.returncode == 0 else 'FAILED'} {name}")
    if failed:
        raise UserError(f"{len(failed)} job(s) failed or were blocked: "
                        + ", ".join(_job_name(j) for j in failed) + f"; see {out / 'logs'}")


def summarize(out: Path, seeds: list[int]) -> list[dict]:
    return summarize_seed_dirs([Path(out) / f"seed{s}" for s in seeds])


def summarize_seed_dirs(seed_dirs: list[Path]) -> list[dict]:
    """One table entry per regime over the seed folders (OUT/seedS) given, which may come from
    several `reproduce` folders (`binding combine`)."""
    table = []
    for regime in REGIME_ORDER:
        found = [d / regime for d in seed_dirs if (d / regime / "regime.json").exists()]
        runs = [read_json(d / "regime.json") for d in found]
        if not runs:
            continue
        ood_mean, ood_sd = mean_sd([r["ood_accuracy"] for r in runs])
        ns = list(runs[0]["accuracy_by_n"])
        table.append({
            "regime": regime, "seeds": [r["seed"] for r in runs],
            "id_accuracy_mean": mean_sd([r["id_accuracy"] for r in runs])[0],
            "ood_accuracy_mean": ood_mean, "ood_accuracy_sd": ood_sd,
            "ood_accuracy_by_seed": {str(r["seed"]): r["ood_accuracy"] for r in runs},
            "accuracy_by_n_mean": {n: mean_sd([r["accuracy_by_n"][n] for r in runs])[0] for n in ns},
            "total_steps_mean": mean_sd([r["total_steps"] for r in runs])[0],
            # a fixed-length stage (tag "text+3600" or "text+longest") has no threshold to miss
            "stages": [[(st["stage"], st["steps"], st["reached_threshold"] or "+" in st["stage"]) for st in r["stages"]]
                       for r in runs],
            "id_range": runs[0]["id_range"], "ood_range": runs[0]["ood_range"],
            "run_dirs": [str(d) for d in found],
            "paper_ood_accuracy": PAPER_OOD.get(regime),
        })
    return table


def effect_ratio(table: list[dict], num: str = "image-text", den: str = "text-only", resamples: int = 20_000,
                 seed: int = 0) -> dict | None:
    """Mean text OOD accuracy of `num` over that of `den`, on the seeds both have, with a 5-95%
    bootstrap interval (seeds resampled with replacement, the pairs kept together)."""
    by = {e["regime"]: e["ood_accuracy_by_seed"] for e in table}
    if num not in by or den not in by:
        return None
    seeds = sorted(set(by[num]) & set(by[den]), key=int)
    a, b = np.array([by[num][s] for s in seeds]), np.array([by[den][s] for s in seeds])
    idx = np.random.default_rng(seed).integers(0, len(seeds), size=(resamples, len(seeds)))
    boot = a[idx].mean(1) / b[idx].mean(1)
    return {"num": num, "den": den, "seeds": seeds, "ratio": float(a.mean() / b.mean()),
            "per_seed": (a / b).tolist(), "p5": float(np.percentile(boot, 5)), "p95": float(np.percentile(boot, 95))}


def write_report(out: Path, table: list[dict], preset: str, wall_s: float | None, mechanism: str = "") -> Path:
    rows = []
    for e in table:
        sd = f" +- {100 * e['ood_accuracy_sd']:.1f}" if len(e["seeds"]) > 1 else " (1 seed)"
        paper = f"{e['paper_ood_accuracy']:.1f}" if e["paper_ood_accuracy"] is not None else "-"
        stages = " -> ".join(f"{s}:{n}{'' if ok else '*'}" for s, n, ok in e["stages"][0])
        rows.append([e["regime"], f"{100 * e['ood_accuracy_mean']:.1f}{sd}", paper,
                     f"{100 * e['id_accuracy_mean']:.1f}", f"{e['total_steps_mean']:.0f}", stages])
    png = plot_accuracy_by_n({e["regime"]: {"accuracy_by_n": e["accuracy_by_n_mean"], "id_range": e["id_range"]}
                              for e in table}, out / "accuracy_by_n.png",
                             f"text-only accuracy by N, preset {preset}, mean over seeds")
    text = (f"# Binding study: curricula (preset {preset})\n\n"
            f"Text-only evaluation of each regime's final model. OOD = N {table[0]['ood_range'][0]}.."
            f"{table[0]['ood_range'][1]}, ID = N {table[0]['id_range'][0]}..{table[0]['id_range'][1]}. "
            f"Paper numbers: mean text OOD accuracy (its N 9..32, its model and encoders).\n\n"
            + md_table(["regime", "ours: text OOD % (mean +- sd)", "paper: text OOD %", "ours: text ID %",
                        "steps", "stages (steps; * = threshold not reached)"], rows)
            + (f"\n{_ratio_line(r)}\n" if (r := effect_ratio(table)) else "")
            + f"\n![accuracy by N]({png.name})\n"
            + (f"\nWall time of this `binding reproduce` call: {wall_s:.0f} s (stages finished by an earlier "
               f"call are reused, not retrained; each stage's own train_seconds is in its results.json).\n"
               if wall_s is not None else "")
            + (f"\n{mechanism}" if mechanism else ""))
    (out / "report.md").write_text(text)
    return out / "report.md"


def _ratio_line(r: dict) -> str:
    return (f"{r['num']} / {r['den']} (mean text OOD): **{r['ratio']:.2f}x** over {len(r['seeds'])} seed(s) "
            f"(per seed {', '.join(f'{x:.2f}' for x in r['per_seed'])}; bootstrap over seeds 5-95%: "
            f"{r['p5']:.2f}-{r['p95']:.2f}x; paper {PAPER_OOD[r['num']] / PAPER_OOD[r['den']]:.2f}x).")


def combine(folders: list[str | Path], out: str | Path) -> list[dict]:
    """The table and report over the seeds of several `reproduce` folders (e.g. seeds trained on
    another machine with --first-seed); a seed found in two folders is an error."""
    seed_dirs: dict[str, Path] = {}
    for folder in map(Path, folders):
        found = sorted(d for d in folder.glob("seed*/") if d.name[4:].isdigit())
        if not found:
            raise UserError(f"{folder} holds no seedS folders of a `binding reproduce` run")
        for d in found:
            if d.name in seed_dirs:
                raise UserError(f"{d.name} is in both {seed_dirs[d.name].parent} and {folder}; combine distinct seeds")
            seed_dirs[d.name] = d
    table = summarize_seed_dirs(sorted(seed_dirs.values(), key=lambda d: int(d.name[4:])))
    if not table:
        raise UserError(f"no trained regime (seedS/<regime>/regime.json) in {', '.join(map(str, folders))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "table.json", table)
    write_report(out, table, "combined: " + ", ".join(map(str, folders)), None)
    return table


def reproduce(preset: str, out: str | Path, seeds: int | None = None, overrides: list[str] | None = None,
              workers: int = 2, quiet: bool = False, analysis: bool = True, first_seed: int = 0,
              analyze=None) -> list[dict]:
    """analyze: the AnalyzeConfig of the analysis jobs (the same overrides reach them)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_list = list(range(first_seed, first_seed + (seeds or SEEDS.get(preset, 1))))
    t0 = time.time()
    run_jobs(preset, out, seed_list, overrides or [], workers, quiet, analysis)
    wall_s = time.time() - t0
    table = summarize(out, seed_list)
    atomic_write_json(out / "table.json", table)
    mechanism = ""
    if analysis:
        from .interp.compare import analyze_regimes, report_section
        mechanism = report_section(analyze_regimes(out, table, analyze, quiet=quiet))
    write_report(out, table, preset, wall_s, mechanism)
    return table
