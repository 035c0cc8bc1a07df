"""``mtrs quickstart``: synthetic data → hard vs soft parallel → table, report, lists."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mtrs.cli.models import print_recommendation
from mtrs.cli.output import console, metrics_table
from mtrs.config.load import load_config, override
from mtrs.config.models import seed_keys
from mtrs.errors import MtrsUserError
from mtrs.outdir import QUICKSTART, check_out

if TYPE_CHECKING:
    import pandas as pd

    from mtrs.config.models import JobConfig
    from mtrs.datasets.synth import SynthSpec
    from mtrs.job import Job
    from mtrs.prepare import Prepared

ARCHITECTURES = {
    "single": "hard parallel (single)",
    "shared_bottom": "soft parallel (shared bottom)",
}
DATA_TABLES = ("interactions", "users", "items")


def write_report(out: Path, jobs: dict[str, Job], oracle: dict[str, dict[str, float]]) -> Path:
    """HTML report: comparison table, training curves and per-task metric bars."""
    from mtrs.report.html import Report
    from mtrs.report.plots import metric_bars, training_curves

    rep = Report("mtrs quickstart — hard vs soft parallel on synthetic e-commerce data")
    rep.text(
        "Tasks: click (all impressions), purchase given click, gender (user profiling, "
        "user-side inputs only); the funnel click∧purchase is reported as ESMM's joint task. "
        "Oracle = AUC of the generator's true probabilities on the same test rows."
    )
    rows: dict[str, dict[str, float]] = {}
    for name, job in jobs.items():
        rows[name] = {
            f"{t}/{m}": v
            for t, ms in job.test_metrics.items()
            for m, v in ms.items()
            if m in ("auc", "rmse", "accuracy")
        }
    cols = sorted({c for r in rows.values() for c in r})
    rep.heading("Test metrics")
    table_rows = [
        [
            "oracle",
            *[
                f"{oracle.get(c.split('/')[0], {}).get('auc', float('nan')):.4f}"
                if c.endswith("/auc")
                else "–"
                for c in cols
            ],
            "–",
        ]
    ]
    for name, job in jobs.items():
        table_rows.append(
            [
                name,
                *[f"{rows[name].get(c, float('nan')):.4f}" for c in cols],
                f"{job.num_parameters:,}",
            ]
        )
    rep.table(["system", *cols, "parameters"], table_rows)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    ref = {f"{t}/auc": v["auc"] for t, v in oracle.items()}
    rep.heading("Per-task metrics (dashed: oracle)")
    rep.image(metric_bars(rows, figs / "metrics.png", "test metrics", reference=ref))
    rep.heading("Training curves")
    hist = {
        name: [
            {"epoch": e.epoch, "train_loss": e.train_loss, "valid": e.valid}
            for e in job.result.history
        ]
        for name, job in jobs.items()
    }
    rep.image(training_curves(hist, figs / "training.png"))
    return rep.write(out / "report.html")


def _generate_and_prepare(
    out: Path,
    spec: SynthSpec,
    user_cfg: JobConfig | None,
    config: Path | None,
    epochs: int | None,
    seed: int,
) -> tuple[Prepared, JobConfig, pd.DataFrame]:
    """Write the synthetic tables under ``out/data`` and prepare the job on them."""
    import pandas as pd

    from mtrs.datasets.quickstart import write_synth
    from mtrs.prepare import prepare

    data_dir = out / "data"
    generated = write_synth(data_dir, spec)
    console.print(
        f"[bold]1.[/] synthetic log: {spec.num_events:,} impressions, {spec.num_users:,} "
        f"users, {spec.num_items:,} items → {data_dir}"
    )
    truth = pd.read_csv(data_dir / "truth.csv")
    base = packaged = load_config(generated)
    options: dict[str, Any] = {}
    if user_cfg is not None:
        base = user_cfg
        options = {f"data.{t}": str(getattr(packaged.data, t)) for t in DATA_TABLES}
    options.update(dict.fromkeys(seed_keys(base), seed))
    if epochs is not None:
        options["train.epochs"] = epochs
    base = override(base, options, str(config or generated))
    return prepare(base), base, truth


def quickstart(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/quickstart"),
    events: Annotated[int, typer.Option(help="Synthetic impressions.")] = 100_000,
    users: Annotated[int, typer.Option(help="Synthetic users.")] = 2000,
    items: Annotated[int, typer.Option(help="Synthetic items.")] = 500,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="A job config for the synthetic tables instead of the packaged one (its [data] "
            "files are replaced by the generated ones), e.g. configs/quickstart-ids.toml."
        ),
    ] = None,
    architectures: Annotated[
        str, typer.Option(help="Comma-separated architectures to train and compare.")
    ] = ",".join(ARCHITECTURES),
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the synthetic data and every seed of the job (train, split, tune)."
        ),
    ] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a previous output in OUT.")
    ] = False,
) -> None:
    """Generate data, train hard and soft parallel, compare with the oracle, report, recommend."""
    from mtrs.arch.registry import get_architecture

    names = list(dict.fromkeys(a.strip() for a in architectures.split(",") if a.strip()))
    if not names:
        raise MtrsUserError("--architectures: name at least one architecture")
    for name in names:
        get_architecture(name)
    user_cfg = load_config(config) if config is not None else None  # a bad file fails first
    check_out(out, QUICKSTART, overwrite)
    from mtrs.artifact import load_model, save_job
    from mtrs.datasets.quickstart import oracle_metrics
    from mtrs.datasets.synth import SynthSpec
    from mtrs.job import run_job

    start = time.perf_counter()
    existed = out.exists()
    fresh = not existed or not any(out.iterdir())  # check_out allows these, or a quickstart's
    try:
        prepared, base, truth = _generate_and_prepare(
            out, SynthSpec(num_users=users, num_items=items, num_events=events, seed=seed),
            user_cfg, config, epochs, seed,
        )  # fmt: skip
    except MtrsUserError:
        # A --config that does not fit the generated tables: nothing half-written stays
        # behind in a directory this command created.
        if fresh:
            for entry in out.iterdir() if existed else [out]:
                shutil.rmtree(entry, ignore_errors=True)
        raise
    jobs: dict[str, Job] = {}
    for arch in names:
        label = ARCHITECTURES.get(arch, arch)
        cfg = base.model_copy(deep=True)
        cfg.model.architecture = arch
        console.print(f"[bold]2.[/] training {label} …")
        jobs[arch] = run_job(cfg, prepared=prepared)
        save_job(jobs[arch], out / "models" / arch, overwrite=True)
    oracle = oracle_metrics(next(iter(jobs.values())), truth)
    rows: dict[str, Any] = {"oracle (true probabilities)": oracle}
    rows.update({f"{a} ({j.num_parameters:,} params)": j.test_metrics for a, j in jobs.items()})
    console.print(
        metrics_table(
            "test metrics per task", rows, only=("auc", "gauc", "rmse", "accuracy", "macro_f1")
        )
    )
    report = write_report(out, jobs, oracle)
    console.print(f"[bold]3.[/] report: {report}")
    shown = next((a for a in names if a != "single"), names[0])
    model = load_model(out / "models" / shown)
    rec = model.recommender()
    counts = prepared.in_memory().frame.groupby("user_id").size().sort_values(ascending=False)
    picks = [counts.index[0], counts.index[len(counts) // 2], counts.index[-1]]
    console.print(
        f"[bold]4.[/] lists from the {shown} model (merge: "
        f"{model.cfg.recommend.merge} {model.cfg.recommend.weights})"
    )
    for u in picks:
        print_recommendation(rec.recommend(str(u)))
    console.print(
        f"done in {time.perf_counter() - start:.0f} s; models in {out / 'models'}; "
        f"try: mtrs recommend {out / 'models' / shown} --user {picks[0]}"
    )


def register(app: typer.Typer) -> None:
    """Add the command to the main app."""
    app.command()(quickstart)
