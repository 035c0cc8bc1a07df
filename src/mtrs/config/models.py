"""Pydantic models of one job's TOML config; every table rejects unknown keys."""

from __future__ import annotations

import math
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


# Stand-in key columns of a log without user ids, item ids or times (``user_col = ""`` …).
NO_USER, NO_ITEM, NO_TIME = "__mtrs_user__", "__mtrs_item__", "__mtrs_time__"


class NegativesConfig(StrictModel):
    """``[data.negatives]``: sampled non-interactions for a log of positives only.

    Every row of the log gets ``per_positive`` distinct items its user never interacted with
    anywhere in the log, at the same time and with the same user and context columns; the
    generated column ``label`` is 1 on the log's rows and 0 on the sampled ones. See
    :mod:`mtrs.data.negatives`.
    """

    per_positive: int = Field(default=4, ge=1)
    distribution: Literal["uniform", "popularity"] = "uniform"
    alpha: float | None = Field(default=None, gt=0.0, le=2.0)
    label: str = Field(default="interact", min_length=1)
    seed: int = 0

    @property
    def exponent(self) -> float:
        """α of the popularity distribution, p(item) ∝ (count + 1)^α (default 1)."""
        return 1.0 if self.alpha is None else self.alpha

    @model_validator(mode="after")
    def _alpha_needs_popularity(self) -> NegativesConfig:
        if self.alpha is not None and self.distribution != "popularity":
            raise ValueError(
                "data.negatives.alpha: only applies to distribution = 'popularity' "
                f"(distribution is '{self.distribution}')"
            )
        return self


class DataConfig(StrictModel):
    """Where the tables are and which columns identify users, items and time.

    Paths are relative to the config file's directory unless absolute. The log is either one
    ``interactions`` table, split by ``[split]``, or given ``train``, ``valid`` and ``test``
    tables (the split is then the files'). An empty ``user_col``, ``item_col`` or
    ``time_col`` says the log has no such column; the config checks that nothing asks for it.
    ``item_title_col`` and ``display_cols`` name items-table columns that recommendations show
    with each item.
    """

    interactions: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    users: str | None = None
    items: str | None = None
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    streaming: Literal["auto", "always", "never"] = "auto"
    memory_budget_mb: int = Field(default=2048, ge=1)
    chunk_rows: int = Field(default=262144, ge=1)
    shuffle_buffer_rows: int = Field(default=1_000_000, ge=1)
    prefetch_chunks: int = Field(
        default=0,
        ge=0,
        description="Streamed training: chunks read and encoded ahead on a background "
        "thread while the model trains (0: read in turn). Off by default: on a CPU the "
        "reader competes with the training threads for the same cores (docs/performance.md).",
    )
    cache_chunks: bool = Field(
        default=True,
        description="Streamed training: keep the training rows encoded on disk from the "
        "preparation pass (a temporary directory under TMPDIR, deleted with the job), so "
        "epochs read them instead of reading and encoding the log again. Costs about the "
        "encoded training rows' size in disk space.",
    )
    eval_rows: int = Field(default=200_000, ge=1)
    item_title_col: str | None = None
    display_cols: list[str] = Field(default_factory=list)
    negatives: NegativesConfig | None = None

    @model_validator(mode="after")
    def _one_log(self) -> DataConfig:
        given = [k for k in ("train", "valid", "test") if getattr(self, k) is not None]
        if self.interactions is not None and given:
            raise ValueError(
                f"give either interactions (split by [split]) or train/valid/test "
                f"files, not both (got interactions and {', '.join(given)})"
            )
        if self.interactions is None and self.train is None:
            raise ValueError(
                "name the log, as interactions = FILE or as given train = FILE "
                "(with optional valid and test)"
            )
        return self

    @property
    def given_split(self) -> bool:
        """Whether the split is given by ``train``/``valid``/``test`` files."""
        return self.train is not None

    @property
    def log_files(self) -> list[str]:
        """The log's files: ``interactions``, or the given train, valid and test files."""
        if self.interactions is not None:
            return [self.interactions]
        return [p for p in (self.train, self.valid, self.test) if p is not None]

    @property
    def log_name(self) -> str:
        """How messages name the log (its file, or its given files)."""
        return ", ".join(self.log_files)

    @property
    def user_key(self) -> str:
        """The column of user ids in the merged rows (a constant stand-in when there is none)."""
        return self.user_col or NO_USER

    @property
    def item_key(self) -> str:
        """The column of item ids in the merged rows (a constant stand-in when there is none)."""
        return self.item_col or NO_ITEM

    @property
    def time_key(self) -> str:
        """The column of event times in the merged rows (a constant 0 when there is none)."""
        return self.time_col or NO_TIME


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


Scalar = float | str


class LabelRule(StrictModel):
    """A label derived from a column in the data stage, e.g. ``{column = "rating", at_least = 4}``.

    For a binary task the comparisons that are given must all hold for a 1 (``at_least``,
    ``above``, ``at_most``, ``below``, ``equals``, ``one_of``); a missing value stays missing.
    For a multiclass task ``map`` sends a value (as text: ``"4"`` also matches 4.0) to its
    class; a value the map lacks, or a missing one, gives no label. As a task's ``condition``
    the rule's 1s are the rows the task learns from.
    """

    column: str
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None
    equals: Scalar | None = None
    one_of: list[Scalar] | None = None
    map: dict[str, str] | None = None

    @property
    def comparisons(self) -> dict[str, Any]:
        """The comparisons that are set, by name."""
        names = ("at_least", "above", "at_most", "below", "equals", "one_of")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @model_validator(mode="after")
    def _one_kind(self) -> LabelRule:
        if self.map is not None and self.comparisons:
            raise ValueError("give either comparisons (a binary label) or map (classes), not both")
        if self.map is None and not self.comparisons:
            raise ValueError(
                "give a comparison (at_least, above, at_most, below, equals, one_of) or a map"
            )
        if self.map is not None and len(set(self.map.values())) < 2:
            raise ValueError("map: a multiclass label needs at least two classes")
        if self.one_of is not None and not self.one_of:
            raise ValueError("one_of must not be empty")
        return self


class TaskConfig(StrictModel):
    """One prediction task, addressed by ``name`` in outputs, metrics, weights and merges.

    A row whose label is missing, or whose ``condition`` is not 1, adds no loss and no metric
    for this task. ``label`` and ``condition`` name a column, or derive one with a
    :class:`LabelRule` (computed once in the data stage). A ``user`` scoped task (profiling)
    reads only the user-side inputs. ``positive_value`` makes a binary label out of a text
    column (e.g. ``"F"`` for gender).
    """

    name: str
    type: TaskType
    label: str | LabelRule
    scope: TaskScope = "event"
    weight: float = Field(default=1.0, ge=0.0)
    condition: str | LabelRule | None = None
    num_classes: int | None = Field(default=None, ge=2)
    positive_value: str | None = None

    @property
    def label_column(self) -> str:
        """The column of the label in the rows (the derived column for a rule)."""
        return self.label if isinstance(self.label, str) else f"{self.name}:label"

    @property
    def condition_column(self) -> str | None:
        """The column of the condition in the rows, if any (the derived one for a rule)."""
        if self.condition is None or isinstance(self.condition, str):
            return self.condition
        return f"{self.name}:condition"

    @property
    def source_columns(self) -> list[str]:
        """The data columns the label and condition read."""
        out = []
        for x in (self.label, self.condition):
            if x is not None:
                out.append(x if isinstance(x, str) else x.column)
        return out

    @property
    def label_source(self) -> str:
        """The data column the label reads."""
        return self.label if isinstance(self.label, str) else self.label.column

    @model_validator(mode="after")
    def _check_rules(self) -> TaskConfig:
        where = f"tasks.{self.name}"
        if isinstance(self.label, LabelRule):
            if self.type == "regression":
                raise ValueError(f"{where}.label: a regression label is a column name, not a rule")
            if self.type == "binary" and self.label.map is not None:
                raise ValueError(
                    f"{where}.label: a binary label is derived by comparisons, not a map"
                )
            if self.type == "multiclass" and self.label.map is None:
                raise ValueError(f"{where}.label: a multiclass label is derived by a map")
            if self.positive_value is not None:
                raise ValueError(f"{where}: give positive_value or a label rule, not both")
        if isinstance(self.condition, LabelRule) and self.condition.map is not None:
            raise ValueError(f"{where}.condition: a condition is derived by comparisons")
        return self


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
    # Checkpoints into ``--out``/checkpoints every this many optimizer steps and at each
    # epoch's end (None: none, unless ``mtrs train --resume`` asks for epoch-end ones).
    checkpoint_every: int | None = Field(default=None, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)


class SplitConfig(StrictModel):
    """How events are split into train, validation and test.

    ``unit`` names a column whose rows stay in one split together (e.g. a rating event and the
    negatives sampled for it); by default every row is its own unit. ``given`` is the split of
    ``data.train``/``valid``/``test`` files (set by itself when they are given).
    """

    method: Literal["random", "temporal", "leave_last", "given"] = "random"
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
        # A label may not be an input of its own event. Past values of it may: a history's
        # side value reads only strictly earlier events (history_value).
        inputs = {f.source_column: f.name for f in self.features if f.kind != "history"}
        for t in self.tasks:
            if t.label_source in inputs:
                raise ValueError(
                    f"tasks.{t.name}.label: column '{t.label_source}' is also the input of feature "
                    f"'{inputs[t.label_source]}'; a label may not be used as a feature of its own "
                    "event (its past values may: history_value on a history feature)"
                )
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
        _check_keys(self)
        _check_negatives(self)
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
        for w, value in self.recommend.weights.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"recommend.weights.{w}: {value} is not a finite number >= 0")
        _check_metric_keys(self)
        return self


def _check_keys(cfg: JobConfig) -> None:
    """What a log without user ids, item ids or times (an empty ``*_col``) cannot do.

    Also settles the split: given ``train``/``valid``/``test`` files are the split.
    """
    d, s = cfg.data, cfg.split
    if d.given_split and s.method != "given":
        if "method" in s.model_fields_set:
            raise ValueError(
                f"split.method = '{s.method}': the split is given by data.train/valid/test; "
                "remove split.method (or use one interactions table)"
            )
        s.method = "given"
    if not d.given_split and s.method == "given":
        raise ValueError("split.method = 'given' needs data.train (and valid, test) files")
    missing = {
        name: (field, what)
        for name, field, what, col in (
            ("user", "data.user_col", "user ids", d.user_col),
            ("time", "data.time_col", "event times", d.time_col),
        )
        if not col
    }
    histories = [f.name for f in cfg.features if f.kind == "history"]
    split_needs = {"temporal": ("time",), "leave_last": ("user", "time")}
    for name, (field, what) in missing.items():
        if histories:
            raise ValueError(
                f"features.{histories[0]}: a behaviour history needs the log's {what} "
                f"({field} is empty)"
            )
        if name in split_needs.get(s.method, ()):
            raise ValueError(
                f"split.method = '{s.method}' needs the log's {what} ({field} is empty); "
                "use 'random' or given train/valid/test files"
            )
    if not d.user_col:
        profiling = [t.name for t in cfg.tasks if t.scope == "user"]
        if profiling:
            raise ValueError(
                f"tasks.{profiling[0]}: a user-scoped task needs the log's user ids "
                "(data.user_col is empty)"
            )
        if d.users is not None:
            raise ValueError("data.users: a users table needs data.user_col (it is empty)")
    if not d.item_col and d.items is not None:
        raise ValueError("data.items: an items table needs data.item_col (it is empty)")


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


def _check_negatives(cfg: JobConfig) -> None:
    """The generated label is a new column: not an id, the split unit or a model input."""
    neg = cfg.data.negatives
    if neg is None:
        return
    d = cfg.data
    for col, field in ((d.user_col, "data.user_col"), (d.item_col, "data.item_col")):
        if not col:
            raise ValueError(
                f"data.negatives: sampling never-interacted items needs {field} ({field} is empty)"
            )
    taken = {d.user_col: "data.user_col", d.item_col: "data.item_col", d.time_col: "data.time_col"}
    if cfg.split.unit:
        taken.setdefault(cfg.split.unit, "split.unit")
    if neg.label in taken:
        raise ValueError(
            f"data.negatives.label: '{neg.label}' is already {taken[neg.label]}; "
            "name a new column for the generated 1 (logged) / 0 (sampled) label"
        )
    for f in cfg.features:
        used = [f.history_value] if f.kind == "history" else [f.source_column]
        if neg.label in used:
            raise ValueError(
                f"data.negatives.label: column '{neg.label}' is an input of feature "
                f"'{f.name}'; the generated label would leak the answer"
            )


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
