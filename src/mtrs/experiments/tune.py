"""``mtrs tune``: hyper-parameter search with Optuna on the validation data only.

Each trial trains one model with a configuration drawn from ``[tune.space]`` by the TPE
sampler; a trial whose validation monitor falls below the median of earlier trials at the same
epoch is pruned. The study lives in ``DIR/study.db`` (SQLite), so an interrupted search
resumes where it stopped. With several architectures each gets its own study with the same
space and the same number of trials, so that their comparison is fair.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mtrs.config.load import config_from_dict, config_to_dict
from mtrs.config.models import JobConfig, SearchDimension
from mtrs.data.split import VALID
from mtrs.data.tables import Tables
from mtrs.errors import MtrsUserError
from mtrs.eval.metrics import is_higher_better
from mtrs.experiments.merge_fit import fit_merge
from mtrs.experiments.ranking import MERGED, evaluate_lists, list_scores, ranking_setup
from mtrs.experiments.tune_report import StudyResult, write_study, write_summary
from mtrs.job import Job, run_job
from mtrs.prepare import Prepared, prepare
from mtrs.tasks.taskset import PRIMARY_METRIC
from mtrs.train.trainer import EpochRecord, Trainer

DEFAULT_SPACE: dict[str, SearchDimension] = {
    "train.lr": SearchDimension(low=1e-4, high=3e-2, log=True),
    "train.weight_decay": SearchDimension(choices=[0.0, 1e-6, 1e-5, 1e-4]),
    "train.batch_size": SearchDimension(choices=[256, 512, 1024, 2048]),
    "model.embedding_dim": SearchDimension(choices=[8, 16, 32]),
    "model.shared.dropout": SearchDimension(low=0.0, high=0.3),
}
DATA_KEYS = {"data", "features", "tasks", "split", "relations"}


def _optuna() -> Any:
    try:
        import optuna
    except ModuleNotFoundError:
        raise MtrsUserError("mtrs tune needs Optuna: pip install 'mtrs[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tune_metric(cfg: JobConfig) -> str:
    """``tune.metric``, else the early-stopping monitor, else the first event task's primary."""
    if cfg.tune.metric:
        return cfg.tune.metric
    if cfg.train.early_stop:
        return cfg.train.early_stop
    first = next((t for t in cfg.tasks if t.scope == "event"), cfg.tasks[0])
    return f"{first.name}/{PRIMARY_METRIC[first.type]}"


def set_path(cfg: JobConfig, path: str, value: Any) -> None:
    """Set a dotted config path, e.g. ``train.lr`` or ``features.history.max_length``.

    Raises:
        MtrsUserError: An unknown path or a value the field does not accept.
    """
    parts = path.split(".")
    obj: Any = cfg
    if parts[0] in ("features", "tasks") and len(parts) >= 3:
        items = getattr(cfg, parts[0])
        obj = next((x for x in items if x.name == parts[1]), None)
        if obj is None:
            raise MtrsUserError(f"tune.space: '{path}': no {parts[0][:-1]} named '{parts[1]}'")
        parts = parts[2:]
    for name in parts[:-1]:
        obj = getattr(obj, name, None)
        if obj is None:
            raise MtrsUserError(f"tune.space: '{path}' is not a config path")
    if parts[-1] not in type(obj).model_fields:
        raise MtrsUserError(f"tune.space: '{path}' is not a config path")
    try:
        setattr(obj, parts[-1], value)
    except ValidationError as err:
        first = err.errors()[0]["msg"]
        raise MtrsUserError(f"tune.space: '{path}' = {value!r}: {first}") from None


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str)


def suggest(trial: Any, path: str, dim: SearchDimension) -> Any:
    """A value of one dimension for a trial (non-scalar choices travel as JSON text)."""
    if dim.choices is not None:
        if all(_scalar(c) for c in dim.choices):
            return trial.suggest_categorical(path, dim.choices)
        return json.loads(trial.suggest_categorical(path, [json.dumps(c) for c in dim.choices]))
    assert dim.low is not None and dim.high is not None
    if dim.integer:
        return trial.suggest_int(path, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(path, dim.low, dim.high, log=dim.log)


class Objective:
    """Train one trial's model and return its validation value.

    Args:
        base: The config every trial starts from (``tune.space`` is applied to a copy).
        tables: Tables already in memory (else read from ``[data]``).
        space: The search space.
        metric: The validation metric (see :func:`tune_metric`).
    """

    def __init__(
        self,
        base: JobConfig,
        tables: Tables | None,
        space: dict[str, SearchDimension],
        metric: str,
    ) -> None:
        self.base = base
        self.tables = tables
        self.space = space
        self.metric = metric
        self.list_name, _, self.metric_name = metric.partition("/")
        self.ranking = "@" in self.metric_name
        if self.ranking and not base.tune.relevant:
            raise MtrsUserError(
                f"tune.relevant: the ranking metric '{metric}' needs the column whose 1s are "
                "relevant in the validation period"
            )
        self._cache: tuple[str, Prepared] | None = None

    def _prepared(self, cfg: JobConfig) -> Prepared:
        # Trials that change only the model or training reuse the prepared data.
        key = json.dumps(cfg.model_dump(mode="json", include=DATA_KEYS), sort_keys=True)
        if self._cache is None or self._cache[0] != key:
            self._cache = None  # let the old data go before the new is built
            self._cache = (key, prepare(cfg, self.tables))
        return self._cache[1]

    def config(self, trial: Any) -> JobConfig:
        """The trial's config: the base with the space's suggestions applied."""
        cfg = self.base.model_copy(deep=True)
        for path, dim in self.space.items():
            set_path(cfg, path, suggest(trial, path, dim))
        cfg.train.progress = False
        return cfg

    def __call__(self, trial: Any) -> float:
        optuna = _optuna()
        cfg = self.config(trial)
        prepared = self._prepared(cfg)
        monitor = cfg.train.early_stop or self.metric
        report = None if self.ranking else self.metric
        if report is None and is_higher_better(monitor):
            report = monitor  # the ranking metrics are higher-better too

        def prune(trainer: Trainer, rec: EpochRecord) -> None:
            if report is None or not cfg.tune.pruning:
                return
            task, _, name = report.partition("/")
            value = rec.valid.get(task, {}).get(name, math.nan)
            if not math.isnan(value):
                trial.report(value, rec.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        job = run_job(cfg, prepared=prepared, configure=lambda t: t.epoch_callbacks.append(prune))
        value = self.value(job, cfg)
        trial.set_user_attr("config", config_to_dict(cfg))
        trial.set_user_attr("best_epoch", job.result.best_epoch)
        return value

    def value(self, job: Job, cfg: JobConfig) -> float:
        """The trial's validation value; a merged-list metric also fits the trial's merge."""
        if not self.ranking:
            return job.result.best_valid.get(self.list_name, {}).get(self.metric_name, math.nan)
        assert cfg.tune.relevant is not None
        setup = ranking_setup(job.prepared, cfg.tune.relevant, period=VALID)
        rec = job.recommender(setup.catalog)
        mats = list_scores(rec, setup)
        k = int(self.metric_name.split("@", 1)[1])
        ks = sorted({k, 10})
        if self.list_name == MERGED:
            probability = [t for t in rec.list_tasks if job.tasks.is_probability(t)]
            fit = fit_merge(
                mats, setup.seen_mask(), setup.relevant, probability, ks, self.metric_name
            )
            cfg.recommend.merge = fit.strategy  # type: ignore[assignment]
            cfg.recommend.weights = fit.weights
            return fit.value
        if self.list_name not in mats:
            raise MtrsUserError(
                f"tune.metric: '{self.list_name}' has no ranked list "
                f"(lists: {', '.join([*mats, MERGED])})"
            )
        got = evaluate_lists({self.list_name: mats[self.list_name]}, setup, {}, ks)
        return got[self.list_name].get(self.metric_name, math.nan)


def _fail_interrupted(study: Any, optuna: Any) -> None:
    """Trials left running by a killed search are marked failed (one process runs a study)."""
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


def run_study(
    cfg: JobConfig,
    out: Path,
    trials: int,
    name: str = "default",
    tables: Tables | None = None,
    on_trial: Callable[[str, dict[str, Any]], None] | None = None,
) -> StudyResult:
    """Run (or resume) one study until it holds ``trials`` finished trials.

    Returns:
        The best trial and the table of every trial.

    Raises:
        MtrsUserError: A bad space or metric, or no trial that finished.
    """
    optuna = _optuna()
    metric = tune_metric(cfg)
    direction = "maximize" if is_higher_better(metric.partition("/")[2]) else "minimize"
    space = dict(cfg.tune.space) or DEFAULT_SPACE
    objective = Objective(cfg, tables, space, metric)
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{(out / 'study.db').resolve()}",
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=cfg.tune.seed),
        # No pruning on the first epoch: one epoch says little about where a trial ends.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        load_if_exists=True,
    )
    _fail_interrupted(study, optuna)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = sum(t.state in finished for t in study.get_trials(deepcopy=False))

    def callback(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(name, _row(trial))

    if trials > done:
        start = time.perf_counter()
        study.optimize(objective, n_trials=trials - done, callbacks=[callback], catch=())
        study.set_user_attr(
            "seconds", study.user_attrs.get("seconds", 0.0) + time.perf_counter() - start
        )
    rows = [_row(t) for t in study.get_trials(deepcopy=False)]
    complete = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.value is not None
        and not math.isnan(t.value)
    ]
    if not complete:
        raise MtrsUserError(f"tune: no trial of study '{name}' finished with a value")
    best = study.best_trial
    best_cfg = config_from_dict(best.user_attrs["config"], f"{out}/best.toml")
    result = StudyResult(
        name, metric, direction, float(best.value), best.number, dict(best.params), best_cfg, rows
    )
    write_study(out, result)
    return result


def _row(trial: Any) -> dict[str, Any]:
    seconds = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {
        "trial": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "params": dict(trial.params),
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "seconds": seconds,
    }


def run_tune(
    cfg: JobConfig,
    out: Path,
    trials: int,
    architectures: Sequence[str] | None = None,
    tables: Tables | None = None,
    on_trial: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[StudyResult]:
    """One study per architecture (the config's own by default), the same budget for each.

    With several architectures each study lives in ``out/<architecture>/``.

    Raises:
        MtrsUserError: An architecture that cannot run on the config, a bad space or metric.
    """
    from mtrs.experiments.grid import skip_reason

    names = list(architectures) if architectures else [cfg.model.architecture]
    results = []
    for arch in names:
        c = cfg.model_copy(deep=True)
        c.model.architecture = arch
        reason = skip_reason(c, arch)
        if reason:
            raise MtrsUserError(f"--architectures: {arch} {reason}")
        where = out / arch if architectures else out
        results.append(run_study(c, where, trials, arch, tables, on_trial))
    write_summary(out, results)
    return results
