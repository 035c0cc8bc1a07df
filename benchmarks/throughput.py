"""Training and prediction throughput of mtrs and its peers on the reference workload.

The workload is the brief's §6 (AliExpress-shaped, synthetic): 200,000 rows, 16 categorical
fields, 63 numeric fields, embedding 16, two binary tasks, MMoE with 8 experts [256, 128] and
towers [64], batch 2048, Adam lr 1e-3, one epoch, threads = physical cores. Each system runs in
a fresh process (this script with ``--worker``) on the same rows, generated from the seed; the
worker sends its numbers back as one JSON line on stdout. The per-system adapters live in
``systems.py``; this script runs them, summarises the repeats, checks the goals and prints.

Timed: the whole epoch loop (batching, forward, backward, optimizer step) through each system's
own training API, and prediction over all rows through its own prediction API. Not timed: data
generation, the library's own data preparation (mtrs' processor fit and encode) and model
construction.

Usage::

    python benchmarks/throughput.py                      # all systems, 200,000 rows
    python benchmarks/throughput.py --systems mtrs --rows 50000 --profile
    python benchmarks/throughput.py --repeats 3 --json runs/throughput.json

The peers install with the ``bench`` extra: ``pip install -c constraints.txt -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _workload import Workload, generate, matmul_gflops, peak_rss_mb, physical_cores
from systems import SYSTEMS, profile_mtrs, run_system

GOALS = {
    "train_vs_torch-rechub": 3.0,
    "train_vs_deepctr": 2.0,
    "compute_bound_fraction": 0.60,
    "predict_vs_torch-rechub": 3.0,
}


# ----- worker (one system per fresh process) ----------------------------------------------------


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run one system in this (fresh) process and return its measurements."""
    import torch

    threads = args.threads
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    w = Workload(rows=args.rows, seed=args.seed)
    data = generate(w)
    # The compute bound is against the rate of the precision the system trains in.
    precision = args.mtrs_precision if args.system == "mtrs" else "fp32"
    rate = matmul_gflops(dtype=precision)
    if args.profile_top:
        out = profile_mtrs(w, data, threads, args.mtrs_arch, args.profile_top, args.profile_shapes)
    else:
        out = run_system(args.system, w, data, threads, args.mtrs_arch, args.mtrs_precision)
    out |= {
        "system": args.system,
        "rows": w.rows,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_gflops": rate["wall"],
        "matmul_gflops_main_cpu": rate["main_cpu"],
        "peak_rss_mb": peak_rss_mb(),
        # Other work on the machine skews every number; the 1-minute load shows how much.
        "loadavg_1m": [load_before, os.getloadavg()[0]],
    }
    if "train_seconds" in out:
        out["train_samples_per_s"] = w.rows * w.epochs / out["train_seconds"]
        out["predict_samples_per_s"] = w.rows / out["predict_seconds"]
        # Load-robust estimates: on a busy machine the wall clock counts time this process
        # waited for a core; the main thread's CPU time (it runs the Python loop and its share
        # of every parallel op) approximates the wall time the same run takes on an idle one.
        # Exact with one thread; with more, the main thread also spins at each op's barrier
        # while the machine has descheduled a partner thread, so it overstates the time.
        out["train_samples_per_main_cpu_s"] = w.rows * w.epochs / out["train_main_cpu_seconds"]
        out["predict_samples_per_main_cpu_s"] = w.rows / out["predict_main_cpu_seconds"]
        flops = out.get("train_flops_per_sample")
        if flops:
            achieved = flops * out["train_samples_per_s"] / 1e9
            out["achieved_gflops"] = achieved
            out["compute_bound_fraction"] = achieved / rate["wall"]
            out["compute_bound_fraction_main_cpu"] = (
                flops * out["train_samples_per_main_cpu_s"] / 1e9 / rate["main_cpu"]
            )
    return out


# ----- parent: fresh processes, aggregation, table ----------------------------------------------


def _spawn(system: str, args: argparse.Namespace, profile_top: int = 0) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--system",
        system,
        "--rows",
        str(args.rows),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        "--mtrs-arch",
        args.mtrs_arch,
        "--mtrs-precision",
        args.mtrs_precision,
        "--profile-top",
        str(profile_top),
        *(["--profile-shapes"] if args.profile_shapes else []),
    ]
    env = os.environ | {
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TQDM_DISABLE": "1",
        "PYTHONHASHSEED": "0",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"system": system, "error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return float(statistics.median(vals)) if vals else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one system (plus every repeat's raw numbers)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"], "repeats": runs}
    keys = (
        "train_samples_per_s",
        "predict_samples_per_s",
        "peak_rss_mb",
        "matmul_gflops",
        "achieved_gflops",
        "compute_bound_fraction",
        "train_seconds",
        "predict_seconds",
        "train_samples_per_main_cpu_s",
        "predict_samples_per_main_cpu_s",
        "matmul_gflops_main_cpu",
        "compute_bound_fraction_main_cpu",
        "train_preemptions",
    )
    out: dict[str, Any] = {k: _median(ok, k) for k in keys}
    first = ok[0]
    for k in (
        "version",
        "architecture",
        "precision",
        "params",
        "train_flops_per_sample",
        "threads",
        "torch",
    ):
        out[k] = first.get(k)
    out["auc"] = [float(np.median([r["auc"][t] for r in ok])) for t in range(len(first["auc"]))]
    out["repeats"] = runs
    return out


def goals(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each goal of issue 5 with its measured value and whether it is met."""
    m = summary.get("mtrs", {})
    out: dict[str, dict[str, Any]] = {}

    def ratio(key: str, peer: str) -> float | None:
        a, b = m.get(key), summary.get(peer, {}).get(key)
        return a / b if a and b else None

    measured = {
        "train_vs_torch-rechub": ratio("train_samples_per_s", "torch-rechub"),
        "train_vs_deepctr": ratio("train_samples_per_s", "deepctr"),
        "compute_bound_fraction": m.get("compute_bound_fraction"),
        "predict_vs_torch-rechub": ratio("predict_samples_per_s", "torch-rechub"),
    }
    estimated = {
        "train_vs_torch-rechub": ratio("train_samples_per_main_cpu_s", "torch-rechub"),
        "train_vs_deepctr": ratio("train_samples_per_main_cpu_s", "deepctr"),
        "compute_bound_fraction": m.get("compute_bound_fraction_main_cpu"),
        "predict_vs_torch-rechub": ratio("predict_samples_per_main_cpu_s", "torch-rechub"),
    }
    # The goals compare like with like: fp32 against the peers' fp32.
    judged = m.get("precision", "fp32") == "fp32"
    for name, target in GOALS.items():
        value = measured[name]
        out[name] = {
            "target": target,
            "measured": value,
            "met": None if value is None or not judged else value >= target,
            "estimated_idle": estimated[name],
        }
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def print_report(
    summary: dict[str, dict[str, Any]], checks: dict[str, dict[str, Any]], meta: dict[str, Any]
) -> None:
    """Rich tables: per system, then the goals."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    t = Table(
        title=(
            f"Throughput: {meta['rows']:,} rows, batch {meta['batch_size']}, "
            f"{meta['threads']} threads, {meta['repeats']} repeat(s) (medians)"
        )
    )
    for col in (
        "system",
        "train samples/s",
        "predict samples/s",
        "peak RSS MiB",
        "train MFLOP/sample",
        "achieved GFLOP/s",
        "matmul GFLOP/s",
        "compute bound",
        "AUC a / b",
        "preemptions (train)",
        "by main-thread CPU time: train / predict samples/s, compute bound",
    ):
        t.add_column(col, justify="left" if col == "system" else "right")
    for name, s in summary.items():
        if "error" in s:
            t.add_row(name, f"[red]failed: {s['error'].splitlines()[-1][:80]}[/red]")
            continue
        flops = s.get("train_flops_per_sample")
        auc = s.get("auc") or []
        t.add_row(
            f"{name} {s.get('version', '')} ({s.get('architecture')})",
            _fmt(s["train_samples_per_s"], ",.0f"),
            _fmt(s["predict_samples_per_s"], ",.0f"),
            _fmt(s["peak_rss_mb"], ",.0f"),
            _fmt(flops / 1e6 if flops else None, ".2f"),
            _fmt(s.get("achieved_gflops"), ".1f"),
            _fmt(s.get("matmul_gflops"), ".1f"),
            _fmt(s.get("compute_bound_fraction"), ".1%"),
            " / ".join(f"{a:.3f}" for a in auc),
            _fmt(s.get("train_preemptions"), ",.0f"),
            f"{_fmt(s.get('train_samples_per_main_cpu_s'), ',.0f')} / "
            f"{_fmt(s.get('predict_samples_per_main_cpu_s'), ',.0f')}, "
            f"{_fmt(s.get('compute_bound_fraction_main_cpu'), '.1%')}",
        )
    console.print(t)
    g = Table(title="Goals (issue 5)")
    for col in ("goal", "target", "measured (wall clock)", "met", "by main-thread CPU time"):
        g.add_column(col)
    for name, c in checks.items():
        pct = name == "compute_bound_fraction"
        spec, unit = (".1%", "") if pct else (".2f", "×")
        met = c["met"]
        g.add_row(
            name,
            f"≥ {c['target']:.0%}" if pct else f"≥ {c['target']:.1f}×",
            _fmt(c["measured"], spec) + unit,
            "—" if met is None else ("[green]yes[/green]" if met else "[red]no[/red]"),
            _fmt(c.get("estimated_idle"), spec) + unit,
        )
    console.print(g)
    for name, s in summary.items():
        if "error" in s:
            console.print(f"[red]{name} failed:[/red]\n{s['error']}")
    loads = [
        x for s in summary.values() for r in s.get("repeats", []) for x in r.get("loadavg_1m", [])
    ]
    # This run itself adds about `threads` to the load.
    if loads and max(loads) > meta["threads"] + 1:
        console.print(
            f"[yellow]warning: 1-minute load average reached {max(loads):.1f} on "
            f"{os.cpu_count()} CPUs during the runs; other work skews these numbers.[/yellow]"
        )


def print_profile(prof: dict[str, Any]) -> None:
    """The top ops of the profiled mtrs epoch, by name and by input shapes."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    head = (
        f"mtrs epoch under torch.profiler ({prof['profiled_seconds']:.2f} s wall, "
        f"{prof['total_self_cpu_ms']:,.0f} ms self CPU)"
    )
    for key, title in (("ops", head), ("ops_by_shape", "the same, by input shapes")):
        if key not in prof:
            continue
        t = Table(title=title)
        cols = ["op", *(["input shapes"] if key == "ops_by_shape" else []), "calls", "self CPU ms"]
        for col in [*cols, "share"]:
            t.add_column(col, justify="left" if col in ("op", "input shapes") else "right")
        for op in prof.get(key, []):
            t.add_row(
                op["op"],
                *([op["shapes"]] if key == "ops_by_shape" else []),
                str(op["calls"]),
                f"{op['self_cpu_ms']:,.1f}",
                f"{op['share']:.1%}",
            )
        console.print(t)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows (default 200000)")
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {', '.join(SYSTEMS)}",
    )
    p.add_argument("--repeats", type=int, default=1, help="fresh-process runs per system")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--seed", type=int, default=0, help="data and model seed")
    p.add_argument(
        "--threads", type=int, default=physical_cores(), help="torch threads (physical cores)"
    )
    p.add_argument("--mtrs-arch", default="mmoe", help="mtrs architecture (default mmoe)")
    p.add_argument(
        "--mtrs-precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="mtrs train.precision (default fp32, like the peers; the goals are judged on fp32)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile one mtrs epoch (separate fresh process) and print the top ops",
    )
    p.add_argument("--top", type=int, default=20, help="ops to show with --profile")
    p.add_argument(
        "--profile-shapes",
        action="store_true",
        help="with --profile, also group the ops by input shapes (slows the profiled epoch)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--system", default="mtrs", help=argparse.SUPPRESS)
    p.add_argument("--profile-top", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        real_stdout = sys.stdout
        # Peers print progress and banners; only the result line may reach stdout.
        with contextlib.redirect_stdout(sys.stderr):
            result = worker(args)
        real_stdout.write(json.dumps(result) + "\n")
        return 0

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        print(f"--systems: unknown system(s) {unknown} (known: {', '.join(SYSTEMS)})")
        return 2
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    prof: dict[str, Any] | None = None
    total = len(systems) * args.repeats + (1 if args.profile else 0)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
    ) as progress:
        task = progress.add_task("benchmark", total=total)
        # Repeats interleave the systems, so slow drift of the machine hits all of them alike.
        for r in range(args.repeats):
            for s in systems:
                progress.update(task, description=f"{s}: repeat {r + 1}/{args.repeats}")
                runs[s].append(_spawn(s, args))
                progress.advance(task)
        if args.profile:
            progress.update(task, description="mtrs: profiling one epoch")
            prof = _spawn("mtrs", args, profile_top=args.top)
            progress.advance(task)
    summary = {s: summarise(rs) for s, rs in runs.items()}
    checks = goals(summary)
    meta = {
        "rows": args.rows,
        "batch_size": Workload().batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "seed": args.seed,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "workload": asdict(Workload(rows=args.rows, seed=args.seed)),
        "cpu": _cpu_name(),
    }
    print_report(summary, checks, meta)
    if prof is not None:
        if "error" in prof:
            print(f"profile failed: {prof['error']}")
        else:
            print_profile(prof)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"meta": meta, "systems": summary, "goals": checks, "profile": prof}
        args.json.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
