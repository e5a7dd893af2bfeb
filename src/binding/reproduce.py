"""`binding reproduce`: every regime of spec §4, text-only evaluation per N, the table and the figure.

    binding reproduce --preset cpu --out runs/repro            # one seed per regime (the cpu preset)

Jobs run as `binding curriculum` subprocesses, `--workers` at a time (one torch thread each), in
dependency order: the text stage first (text-only), then the regimes that extend it. The
equal-compute control needs the other regimes' step counts; it starts once the text stage is done,
beside the workers, trains up to the other regimes' progress and waits there until the longest
one's total is known (`--follow`, binding/longest.py), so it trains alongside them instead of
alone at the end. With `--ray` (a local cluster on loopback) or `--address` (an existing Ray
cluster whose machines share OUT's file system) each job is the same command run as a Ray task
asking one CPU (the follower none: it runs beside the workers, as locally), so a cluster runs
regimes x seeds in parallel, as `binding sweep` runs recipes; with `train.device=cuda` each job
also asks `--gpus-per-task` of a GPU and Ray pins it to one. Each regime's mechanism analysis
is a job of its own, run once the regime is trained, on a worker the training leaves idle
(`binding curriculum --analyze`). Regimes that
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
    OUT/explore/<regime>-seedS/index.html   an explorer page per regime (`binding explore`), linked
                       from report.md (with the analysis; --no-analysis skips it)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lab.errors import UserError
from lab.io import atomic_write_json

from .config import make_config
from .curriculum import MAIN_TEXT
from .report import REGIME_ORDER, summarize, write_report

SEEDS = {"smoke": 1, "cpu": 1, "paper": 4}
DEPENDS = {"text-only": [], "noise-text": ["text-only"], "image-text": ["text-only", "@encoder"],
           "noise-image-text": ["noise-text", "@encoder"], "mixed-from-start": ["@encoder"],
           "text-only-equal-compute": [r for r in MAIN_TEXT if r != "text-only-equal-compute"],
           "appendix": ["noise-image-text"], "text-only+expand": ["text-only"]}
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


class LocalJobs:
    """Jobs as subprocesses of this process."""

    def start(self, cmd: list[str], log_path: Path, env: dict, follower: bool):
        log = open(log_path, "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        proc.log = log
        return proc

    def returncode(self, proc) -> int | None:
        rc = proc.poll()
        if rc is not None:
            proc.log.close()
        return rc

    def kill(self, proc) -> None:
        proc.kill()
        proc.wait()
        proc.log.close()


def _run_logged(cmd: list[str], log_path: str, env: dict) -> int:
    """A job's command inside a Ray worker, its output into its log (on the shared file system).
    Cancelling the task kills the worker, and Ray kills a dead worker's child processes with it
    (tested), so a stopped job does not train on, orphaned."""
    with open(log_path, "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}).returncode


class RayJobs:
    """Jobs as Ray tasks (one CPU each; a follower none), on a local loopback cluster or at `address`."""

    def __init__(self, workers: int, address: str | None, gpus_per_task: float = 0.0):
        from lab import ray_local

        self.started = ray_local.init_local(num_cpus=workers, address=address, gpus_per_task=gpus_per_task)
        import ray

        self.ray, self.remote, self.gpus = ray, ray.remote(max_retries=0)(_run_logged), gpus_per_task

    def start(self, cmd: list[str], log_path: Path, env: dict, follower: bool):
        threads = {k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        # the follower asks nothing (it waits beside the workers); on GPUs it sees every GPU of its node
        share = {"num_cpus": 0} if follower else {"num_cpus": 1, "num_gpus": self.gpus}
        return self.remote.options(**share).remote(cmd, str(log_path), threads)

    def returncode(self, ref) -> int | None:
        ready, _ = self.ray.wait([ref], timeout=0)
        return self.ray.get(ref) if ready else None

    def kill(self, ref) -> None:
        self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            from lab import ray_local
            ray_local.shutdown()


def run_jobs(preset: str, out: Path, seeds: list[int], overrides: list[str], workers: int, quiet: bool,
             analysis: bool = False, launcher=None) -> None:
    """Every job, `workers` at a time, in dependency order; launcher: LocalJobs (default) or RayJobs."""
    launcher = launcher or LocalJobs()
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
            cmd = _command(preset, out, overrides, job)
            running[job] = (launcher.start(cmd, out / "logs" / f"{name}.log", env, follower), name)
            say(f"start {name}" + (" (follows the other regimes of its seed)" if follower else ""))
        if not running:
            blocked = [j for j in jobs if j not in done and j not in failed]
            failed += blocked   # their dependencies failed
            break
        time.sleep(1.0)
        for job, (handle, name) in list(running.items()):
            rc = launcher.returncode(handle)
            if rc is None and _is_follower(job) and _doomed(job, jobs, failed):
                launcher.kill(handle)   # what it follows failed: it would wait for ever
                rc = -9
            if rc is None:
                continue
            del running[job]
            (done.add(job) if rc == 0 else failed.append(job))
            say(f"{'done' if rc == 0 else 'FAILED'} {name}")
    if failed:
        raise UserError(f"{len(failed)} job(s) failed or were blocked: "
                        + ", ".join(_job_name(j) for j in failed) + f"; see {out / 'logs'}")


def reproduce(preset: str, out: str | Path, seeds: int | None = None, overrides: list[str] | None = None,
              workers: int = 2, quiet: bool = False, analysis: bool = True, first_seed: int = 0,
              analyze=None, ray: bool = False, address: str | None = None, gpus_per_task: float = 0.0) -> list[dict]:
    """analyze: the AnalyzeConfig of the analysis jobs (the same overrides reach them); ray /
    address: run the jobs as Ray tasks (a local loopback cluster of `workers` CPUs, or `address`),
    each asking `gpus_per_task` of a GPU."""
    if ray or address:
        from lab.ray_local import check_gpu_share
        check_gpu_share(make_config(preset, overrides or []).train.device, gpus_per_task, f"preset {preset!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_list = list(range(first_seed, first_seed + (seeds or SEEDS.get(preset, 1))))
    t0 = time.time()
    launcher = RayJobs(workers, address, gpus_per_task) if ray or address else LocalJobs()
    try:
        run_jobs(preset, out, seed_list, overrides or [], workers, quiet, analysis, launcher)
    finally:
        if isinstance(launcher, RayJobs):
            launcher.close()
    wall_s = time.time() - t0
    table = summarize(out, seed_list)
    atomic_write_json(out / "table.json", table)
    mechanism = ""
    if analysis:
        from .interp.compare import analyze_regimes, report_section
        mechanism = report_section(analyze_regimes(out, table, analyze, quiet=quiet))
        from .explore import regimes as explorer
        mechanism += "\n" + explorer.report_section(explorer.regime_pages(out, table, quiet))
    write_report(out, table, preset, wall_s, mechanism)
    return table
