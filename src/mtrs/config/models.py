"""Pydantic models of one job's TOML config; every table rejects unknown keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mtrs.eval.names import JOINT_TYPE, check_ranking_metric, check_task_metric, metric_names

FeatureKind = Literal["categorical", "numeric", "multi_hot", "history"]
FeatureGroup = Literal["user", "behaviour", "item", "context"]
TaskType = Literal["binary", "regression", "multiclass"]
TaskScope = Literal["event", "user"]


class StrictModel(BaseModel):
    """Base for every config table: unknown keys are errors, fields are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Where the tables are and which columns identify users, items and time.

    Paths are relative to the config file's directory unless absolute.
    """

    interactions: str
    users: str | None = None
    items: str | None = None
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    streaming: Literal["auto", "always", "never"] = "auto"
    memory_budget_mb: int = Field(default=2048, ge=1)
    chunk_rows: int = Field(default=262144, ge=1)
    shuffle_buffer_rows: int = Field(default=1_000_000, ge=1)
    eval_rows: int = Field(default=200_000, ge=1)


class FeatureConfig(StrictModel):
    """One input feature, declared once and addressed by name.

    ``kind`` decides the encoding; ``group`` tags the source (user, behaviour, item, context).
    A ``history`` feature is computed by mtrs: the last ``max_length`` items the user interacted
    with strictly before the event, where "interacted" means ``history_filter`` equals 1 (every
    event if unset). It shares the embedding table of the categorical feature ``item_feature``.
    """

    name: str
    column: str | None = None
    kind: FeatureKind
    group: FeatureGroup
    embedding_dim: int | None = Field(default=None, ge=1)
    min_count: int = Field(default=1, ge=1)
    hash_buckets: int = Field(default=0, ge=0)
    oov_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    log1p: bool = False
    separator: str = "|"
    max_length: int = Field(default=20, ge=1)
    pooling: Literal["mean", "din", "transformer"] = "mean"
    item_feature: str | None = None
    history_filter: str | None = None
    history_value: str | None = None

    @property
    def source_column(self) -> str:
        """The table column this feature reads (defaults to its name)."""
        return self.column or self.name

    @model_validator(mode="after")
    def _check_kind_options(self) -> FeatureConfig:
        if self.kind == "history":
            if self.group != "behaviour":
                raise ValueError(f"feature '{self.name}': a history feature has group 'behaviour'")
        elif self.group == "behaviour" and self.kind != "numeric":
            # Behaviour aggregates (counts, recency) are fine as numeric or categorical.
            pass
        return self


class TaskConfig(StrictModel):
    """One prediction task, addressed by ``name`` in outputs, metrics, weights and merges.

    A row whose label is missing, or whose ``condition`` column is not 1, adds no loss and no
    metric for this task. A ``user`` scoped task (profiling) reads only the user-side inputs.
    ``positive_value`` makes a binary label out of a text column (e.g. ``"F"`` for gender).
    """

    name: str
    type: TaskType
    label: str
    scope: TaskScope = "event"
    weight: float = Field(default=1.0, ge=0.0)
    condition: str | None = None
    num_classes: int | None = Field(default=None, ge=2)
    positive_value: str | None = None


class RelationConfig(StrictModel):
    """A funnel between named tasks: p(parent ∧ child) = p(parent)·p(child | parent).

    The joint probability is predicted and scored for every architecture. ``loss`` decides
    whether training goes through it ESMM-style (the child then gets no direct loss): by
    default only when ``model.architecture = "esmm"``.
    """

    type: Literal["esmm"] = "esmm"
    parent: str
    child: str
    name: str | None = None
    loss: bool | None = None

    @property
    def joint_name(self) -> str:
        """Name of the derived joint task (default ``<parent>_<child>``)."""
        return self.name or f"{self.parent}_{self.child}"


class LayerConfig(StrictModel):
    """A task-shared or expert layer: an MLP or a Transformer encoder over feature tokens."""

    type: Literal["mlp", "transformer"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    tokens: Literal["field", "group"] = "field"
    d_model: int = Field(default=32, ge=4)
    heads: int = Field(default=2, ge=1)
    layers: int = Field(default=1, ge=1)


class TowerConfig(StrictModel):
    """Task-specific layers: an MLP, or a Transformer query over the shared tokens."""

    type: Literal["mlp", "transformer"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [64])
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class ExpertConfig(StrictModel):
    """Mixture-of-experts sizes (omoe, mmoe, ple)."""

    num_experts: int = Field(default=4, ge=1)
    task_experts: int = Field(default=1, ge=0)
    levels: int = Field(default=1, ge=1)


class SequenceConfig(StrictModel):
    """Settings of the behaviour-sequence encoders (DIN attention, BST Transformer)."""

    attention_hidden: list[int] = Field(default_factory=lambda: [32])
    transformer_heads: int = Field(default=2, ge=1)
    transformer_layers: int = Field(default=1, ge=1)
    time_gaps: bool = False


class ModelConfig(StrictModel):
    """The network: architecture name, embedding size, shared layer, towers and λ.

    ``interactions = "dot"`` appends the pairwise dot products of the embedded fields to the
    input (as in DLRM, Naumov et al. 2019): MLPs learn such products poorly on their own, and
    user × item affinity is one.
    """

    architecture: str = "shared_bottom"
    embedding_dim: int = Field(default=16, ge=1)
    shared: LayerConfig = Field(default_factory=LayerConfig)
    tower: TowerConfig = Field(default_factory=TowerConfig)
    experts: ExpertConfig = Field(default_factory=ExpertConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    lambda_shared: float = Field(default=0.0, ge=0.0, le=1.0)
    shared_objective: str = "reconstruction"
    interactions: Literal["none", "dot"] = "dot"


class TrainConfig(StrictModel):
    """Optimisation, early stopping, device and seed."""

    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0.0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    early_stop: str | None = None
    patience: int = Field(default=2, ge=0)
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    threads: int = Field(default=0, ge=0)
    weighting: str = "fixed"
    eval_batch_size: int = Field(default=2048, ge=1)
    progress: bool = True


class SplitConfig(StrictModel):
    """How events are split into train, validation and test.

    ``unit`` names a column whose rows stay in one split together (e.g. a rating event and the
    negatives sampled for it); by default every row is its own unit.
    """

    method: Literal["random", "temporal", "leave_last"] = "random"
    valid_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    seed: int = 0
    unit: str | None = None

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must be below 1")
        return self


class RecommendConfig(StrictModel):
    """Candidate generation and list merging."""

    k: int = Field(default=10, ge=1)
    merge: Literal["weighted_sum", "weighted_product", "rrf"] = "weighted_sum"
    weights: dict[str, float] = Field(default_factory=dict)
    rrf_k: float = Field(default=60.0, gt=0.0)
    exclude_seen: bool = True
    # Small enough that the chunk's activations stay in cache: 4,096 scored 100,000
    # candidates 2.6× faster than 65,536 (benchmarks/scoring.py, docs/performance.md).
    chunk_size: int = Field(default=4096, ge=1)


class SearchDimension(StrictModel):
    """One dimension of a hyper-parameter search: a range (``low``/``high``) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SearchDimension:
        ranged = self.low is not None and self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("give either low and high, or choices")
        if ranged and not self.low < self.high:  # type: ignore[operator]
            raise ValueError("low must be below high")
        if self.log and ranged and self.low <= 0:  # type: ignore[operator]
            raise ValueError("a log range needs low > 0")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        return self


class TuneConfig(StrictModel):
    """``mtrs tune``: the validation metric to optimise and the space to search.

    ``metric`` is ``"<task>/<metric>"`` (the validation split at the kept epoch) or a ranking
    metric ``"<list>/<metric>@<k>"`` over the validation period (``merged`` being the merge
    fitted on it), with ``relevant`` naming the column whose 1s are relevant.
    """

    metric: str | None = None
    relevant: str | None = None
    trials: int = Field(default=20, ge=1)
    seed: int = 0
    pruning: bool = True
    space: dict[str, SearchDimension] = Field(default_factory=dict)


class JobConfig(StrictModel):
    """A whole job: data, features, tasks, model, training, split and recommendation."""

    data: DataConfig
    features: list[FeatureConfig]
    tasks: list[TaskConfig]
    relations: list[RelationConfig] = Field(default_factory=list)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> JobConfig:
        names = [f.name for f in self.features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"features: duplicate feature name(s) {sorted(dup)}")
        if not self.tasks:
            raise ValueError("tasks: at least one [[tasks]] table is required")
        tnames = [t.name for t in self.tasks]
        tdup = {n for n in tnames if tnames.count(n) > 1}
        if tdup:
            raise ValueError(f"tasks: duplicate task name(s) {sorted(tdup)}")
        inputs = {f.source_column for f in self.features}
        inputs |= {f.history_value for f in self.features if f.history_value}
        for t in self.tasks:
            if t.label in inputs:
                raise ValueError(
                    f"tasks.{t.name}.label: column '{t.label}' is also an input feature; "
                    "a label may not be used as a feature"
                )
            if t.type == "multiclass" and t.num_classes is None:
                pass  # classes are fitted from the training split
        by_name = {f.name: f for f in self.features}
        for f in self.features:
            if f.kind == "history":
                ref = f.item_feature
                if ref is None or ref not in by_name or by_name[ref].kind != "categorical":
                    raise ValueError(
                        f"features.{f.name}.item_feature: must name a categorical feature "
                        "(the item id) whose embedding the history shares"
                    )
        _check_relations(self.tasks, self.relations)
        if self.train.early_stop is not None and "/" not in self.train.early_stop:
            raise ValueError("train.early_stop: expected '<task>/<metric>', e.g. 'click/auc'")
        # Merge weights name the lists a recommendation has.
        listed = set(list_names(self.tasks, self.relations))
        for w in self.recommend.weights:
            if w not in listed:
                raise ValueError(
                    f"recommend.weights: '{w}' is not a task with a list "
                    f"(lists: {', '.join(sorted(listed))})"
                )
        _check_metric_keys(self)
        return self


def _check_relations(tasks: list[TaskConfig], relations: list[RelationConfig]) -> None:
    """Relations join two distinct binary tasks; joint names collide with nothing."""
    by_name = {t.name: t for t in tasks}
    taken = set(by_name)
    for r in relations:
        for side in (r.parent, r.child):
            if side not in by_name:
                raise ValueError(f"relations: task '{side}' is not declared in [[tasks]]")
            if by_name[side].type != "binary":
                raise ValueError(
                    f"relations: task '{side}' is {by_name[side].type}; "
                    f"an {r.type} relation joins binary tasks"
                )
        if r.parent == r.child:
            raise ValueError(f"relations: parent and child are both '{r.parent}'")
        if r.joint_name in taken:
            raise ValueError(
                f"relations: joint name '{r.joint_name}' is already a task or relation name"
            )
        taken.add(r.joint_name)


def list_names(tasks: list[TaskConfig], relations: list[RelationConfig]) -> list[str]:
    """The ranked lists a recommendation has, by name.

    Event tasks that are not multiclass, then relations' joint tasks (ESMM's
    ``click_purchase``).
    """
    listed = [t.name for t in tasks if t.scope == "event" and t.type != "multiclass"]
    return listed + [r.joint_name for r in relations]


def task_metric_names(
    tasks: list[TaskConfig], relations: list[RelationConfig], by_user: bool = True
) -> dict[str, tuple[str, ...]]:
    """Task and joint-task name → the metrics the evaluator reports for it.

    ``by_user`` False: the rows carry no user ids, so there is no per-user gAUC.
    """
    out = {t.name: metric_names(t.type, t.scope, by_user) for t in tasks}
    return out | {r.joint_name: metric_names(JOINT_TYPE, "event", by_user) for r in relations}


def _check_metric_keys(cfg: JobConfig) -> None:
    """``train.early_stop`` and ``tune.metric`` name a task's metric (or a list's ranking one)."""
    metrics = task_metric_names(cfg.tasks, cfg.relations, by_user=bool(cfg.data.user_col))
    if cfg.train.early_stop is not None:
        check_task_metric("train.early_stop", cfg.train.early_stop, metrics)
    metric = cfg.tune.metric
    if metric is not None:
        if "@" in metric:
            check_ranking_metric("tune.metric", metric, list_names(cfg.tasks, cfg.relations))
        else:
            check_task_metric("tune.metric", metric, metrics)


def seed_keys(cfg: JobConfig) -> list[str]:
    """Every seed of a job as a dotted key: ``train.seed``, ``split.seed``, ``tune.seed``.

    A table that gains a ``seed`` field is listed too, so ``mtrs train --seed`` keeps setting
    every random source of the job.
    """
    return [
        f"{name}.seed"
        for name in type(cfg).model_fields
        if isinstance(table := getattr(cfg, name), BaseModel) and "seed" in type(table).model_fields
    ]
