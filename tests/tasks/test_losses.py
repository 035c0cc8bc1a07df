"""Hand-computed losses of binary, regression and multiclass tasks, masking, and ESMM."""

from __future__ import annotations

import math

import pytest
import torch

from mtrs.config.models import RelationConfig, TaskConfig
from mtrs.data.labels import TaskEncoding
from mtrs.tasks.relations import EsmmRelation
from mtrs.tasks.task import Task
from mtrs.tasks.taskset import TaskSet


def _task(name: str, column: int, type_: str = "binary", **extra: object) -> Task:
    cfg = TaskConfig(name=name, type=type_, label=name, **extra)  # type: ignore[arg-type]
    classes = ["a", "b", "c"] if type_ == "multiclass" else None
    return Task(name, column, TaskEncoding(cfg, classes=classes))


def _sp(x: float) -> float:
    """softplus: ln(1 + e^x)."""
    return math.log1p(math.exp(x))


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ----- binary ---------------------------------------------------------------------------------
def test_binary_bce_on_logits_hand_computed() -> None:
    task = _task("click", 0)
    loss = task.loss(_t([[0.0], [2.0]]), _t([[1.0], [0.0]]), torch.tensor([[True], [True]]))
    # Row 1: -ln σ(0) = ln 2; row 2: -ln(1 - σ(2)) = ln(1 + e²).
    expected = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_binary_reads_its_own_label_column() -> None:
    task = _task("buy", 1)
    labels = _t([[0.0, 1.0], [1.0, 1.0]])
    mask = torch.tensor([[True, True], [True, True]])
    loss = task.loss(_t([[1.0], [-1.0]]), labels, mask)
    # Both rows have label 1 in column 1: softplus(-1) + softplus(1).
    assert loss.item() == pytest.approx((_sp(-1.0) + _sp(1.0)) / 2, rel=1e-6)


def test_masked_rows_add_nothing() -> None:
    task = _task("click", 0)
    logits = _t([[0.0], [2.0], [-30.0]])
    labels = _t([[1.0], [0.0], [1.0]])  # the third row would cost 30 if it counted
    mask = torch.tensor([[True], [True], [False]])
    expected = (math.log(2) + _sp(2.0)) / 2
    assert task.loss(logits, labels, mask).item() == pytest.approx(expected, rel=1e-6)


def test_all_masked_gives_zero_loss_and_zero_gradient() -> None:
    task = _task("click", 0)
    logits = _t([[3.0], [-2.0]]).requires_grad_()
    loss = task.loss(logits, _t([[0.0], [1.0]]), torch.tensor([[False], [False]]))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_binary_predict_is_sigmoid() -> None:
    p = _task("click", 0).kind.predict(_t([[0.0], [math.log(3.0)]]))
    torch.testing.assert_close(p, torch.tensor([0.5, 0.75]))


# ----- regression -----------------------------------------------------------------------------
def test_regression_mse_hand_computed_with_mask() -> None:
    task = _task("rating", 0, "regression")
    logits = _t([[1.0], [3.0], [100.0]])
    labels = _t([[0.0], [1.0], [0.0]])
    mask = torch.tensor([[True], [True], [False]])
    # ((1 - 0)² + (3 - 1)²) / 2 = 2.5
    assert task.loss(logits, labels, mask).item() == pytest.approx(2.5)
    torch.testing.assert_close(task.kind.predict(logits), torch.tensor([1.0, 3.0, 100.0]))


# ----- multiclass -----------------------------------------------------------------------------
def test_multiclass_cross_entropy_hand_computed() -> None:
    task = _task("genre", 0, "multiclass")
    assert task.output_dim == 3
    logits = _t([[0.0, 0.0, 0.0], [0.0, math.log(2.0), math.log(5.0)], [9.0, 0.0, 0.0]])
    labels = _t([[0.0], [2.0], [1.0]])
    mask = torch.tensor([[True], [True], [False]])
    # Row 1: uniform over 3 → ln 3; row 2: softmax = [1, 2, 5]/8, class 2 → -ln(5/8).
    expected = (math.log(3.0) + math.log(8.0 / 5.0)) / 2
    assert task.loss(logits, labels, mask).item() == pytest.approx(expected, rel=1e-6)
    probs = task.kind.predict(logits[1:2])
    torch.testing.assert_close(probs, torch.tensor([[1 / 8, 2 / 8, 5 / 8]]))


def test_task_weight_and_scope_come_from_the_config() -> None:
    t = _task("gender", 0, weight=0.5, scope="user")
    assert t.weight == 0.5 and t.user_scoped and t.type == "binary"
    assert not _task("click", 0).user_scoped


# ----- ESMM -----------------------------------------------------------------------------------
def _esmm(arch_relation: str | None, loss: bool | None = None) -> tuple[list[Task], EsmmRelation]:
    encodings = [_task("click", 0).encoding, _task("buy", 1).encoding]
    cfg = RelationConfig(parent="click", child="buy", loss=loss)
    ts = TaskSet.build(encodings, [cfg], arch_relation)
    assert len(ts.relations) == 1 and [t.column for t in ts] == [0, 1]
    return list(ts), ts.relations[0]


# click, buy labels; buy counts only where click = 1 (a conditional label).
LABELS = _t([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
MASK = torch.tensor([[True, True], [True, True], [True, False], [True, False], [False, False]])
CLICK_LOGIT = [0.0, 1.0, -1.0, 2.0, 5.0]
BUY_LOGIT = [0.0, -1.0, 3.0, 0.5, -5.0]


def test_esmm_child_has_no_direct_loss_when_active() -> None:
    tasks, rel = _esmm("esmm")
    by = {t.name: t for t in tasks}
    assert rel.active and rel.name == "click_buy"
    assert by["click"].direct_loss and not by["buy"].direct_loss
    assert rel.parent is by["click"] and rel.child is by["buy"]


def test_esmm_inactive_for_other_architectures_unless_asked() -> None:
    tasks, rel = _esmm(None)
    assert not rel.active
    assert all(t.direct_loss for t in tasks)
    tasks, rel = _esmm(None, loss=True)
    assert rel.active and not tasks[1].direct_loss
    tasks, rel = _esmm("esmm", loss=False)
    assert not rel.active and tasks[1].direct_loss


def test_esmm_joint_label_and_mask() -> None:
    _, rel = _esmm("esmm")
    y, valid = rel.target(LABELS, MASK)
    # Row 3's child label (1) is masked → filled with 0; row 5 has no parent label.
    torch.testing.assert_close(y, torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]))
    assert valid.tolist() == [True, True, True, True, False]


def test_esmm_joint_probability_is_the_product() -> None:
    _, rel = _esmm("esmm")
    p = rel.predict({"click": torch.tensor([0.5, 0.2]), "buy": torch.tensor([0.4, 1.0])})
    torch.testing.assert_close(p, torch.tensor([0.2, 0.2]))


def test_esmm_loss_is_bce_of_the_product_probability() -> None:
    _, rel = _esmm("esmm")
    logits = {"click": _t([[v] for v in CLICK_LOGIT]), "buy": _t([[v] for v in BUY_LOGIT])}
    loss = rel.loss(logits, LABELS, MASK)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    joint_y = [1.0, 0.0, 0.0, 0.0]  # the four rows with a click label
    terms = []
    for a, b, y in zip(CLICK_LOGIT[:4], BUY_LOGIT[:4], joint_y, strict=True):
        p = sig(a) * sig(b)
        terms.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-5)


def test_esmm_loss_with_no_parent_labels_is_zero() -> None:
    _, rel = _esmm("esmm")
    logits = {"click": _t([[1.0], [2.0]]), "buy": _t([[0.0], [1.0]])}
    none = torch.zeros(2, 2, dtype=torch.bool)
    assert rel.loss(logits, _t([[1.0, 1.0], [0.0, 0.0]]), none).item() == 0.0
