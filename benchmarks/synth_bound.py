"""How much of the synthetic log's user × item affinity can be learnt from its clicks at all.

The oracle AUC of ``mtrs quickstart`` is the AUC of the generator's true probabilities: a model
would need every user's and item's latent taste vector exactly to reach it. This script measures
what models that know *more* than any mtrs model reach from the same training rows, so that the
gap between mtrs and the oracle can be split into what is learnable and what is not:

* ``no affinity``: the true click logit without its user × item term (intercept, popularity,
  hour, device, price — all exact). The floor that the affinity has to lift.
* ``MAP users``: the true logit with the users' latent vectors fitted (maximum a posteriori,
  Gaussian prior of the true variance) on the training clicks, the items' true vectors given.
* ``MAP users and items``: both latent tables fitted, every other effect still exact — a
  correctly specified rank-8 factorisation with an oracle prior.

Each is fitted on the training split of the quickstart config's temporal split and scored on its
test split (the rows ``mtrs quickstart`` scores). These are not strict upper bounds for a learnt
model: an impression history also reveals a user's taste through *which* items they were shown
(exposure follows interests), which the clicks alone do not.

    python benchmarks/synth_bound.py --events 1000000
"""

from __future__ import annotations

import argparse
import time
import tomllib
from typing import Any

import numpy as np
import torch

from mtrs.config.models import SplitConfig
from mtrs.data.split import TEST, TRAIN, SplitInput, assign_split
from mtrs.datasets.quickstart import quickstart_config_text
from mtrs.datasets.synth import CLICK_AFFINITY, LATENT_DIM, ClickFactors, SynthSpec, generate
from mtrs.eval.metrics import auc


def click_logit(rest: Any, users: Any, items: Any, user: Any, item: Any) -> Any:
    """The generator's click logit with the given latent tables (NumPy arrays or tensors)."""
    return rest + CLICK_AFFINITY * (users[user] * items[item]).sum(1) / np.sqrt(LATENT_DIM)


def fit_latents(
    factors: ClickFactors,
    rows: np.ndarray,
    data_cols: tuple[np.ndarray, ...],
    fit_items: bool,
    iterations: int,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP latent tables on ``rows``, every non-affinity effect taken from the truth.

    Args:
        factors: The generator's latent truth.
        rows: The impressions to fit on (indices into the log).
        data_cols: The log's ``(user, item, click)`` columns.
        fit_items: Fit the item vectors too (else the true ones are used).
        iterations: L-BFGS iterations.
    """
    user, item, click = (torch.as_tensor(c[rows]) for c in data_cols)
    rest = torch.as_tensor(factors.rest_logit[rows])
    torch.manual_seed(0)
    users = torch.zeros(factors.user_latent.shape, dtype=torch.float64)
    items = torch.tensor(factors.item_latent, dtype=torch.float64)
    if fit_items:  # a factorisation cannot start at zero on both sides: its gradient is zero
        users.normal_(0.0, 0.1)
        items = torch.empty_like(items).normal_(0.0, 0.1)
    params = [users.requires_grad_()] + ([items.requires_grad_()] if fit_items else [])
    user_var = float(factors.user_latent.var(axis=0).mean())
    item_var = float(factors.item_latent.var(axis=0).mean())
    y = click.to(torch.float64)
    opt = torch.optim.LBFGS(params, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = click_logit(rest, users, items, user, item)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
        loss = loss + 0.5 * (users**2).sum() / user_var
        if fit_items:
            loss = loss + 0.5 * (items**2).sum() / item_var
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return users.detach().numpy(), items.detach().numpy()


def main() -> None:
    """Generate the log, split it as the quickstart does, fit the bounds, print their AUCs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=500, help="L-BFGS iterations per fit.")
    args = p.parse_args()
    spec = SynthSpec(
        num_users=args.users, num_items=args.items, num_events=args.events, seed=args.seed
    )
    data = generate(spec)
    assert data.factors is not None
    f = data.factors
    it = data.interactions
    split_cfg = SplitConfig(**tomllib.loads(quickstart_config_text())["split"])
    user, item = it["user_id"].to_numpy(), it["item_id"].to_numpy()
    click = it["click"].to_numpy()
    part = assign_split(
        SplitInput(user, it["timestamp"].to_numpy(), it["event_id"].to_numpy()), split_cfg
    )
    train, test = np.flatnonzero(part == TRAIN), np.flatnonzero(part == TEST)
    oracle = auc(click[test], data.truth["p_click"].to_numpy()[test])
    print(
        f"{args.events:,} events, {args.users:,} users, {args.items:,} items; "
        f"{len(train):,} train rows, {len(test):,} test rows (split: {split_cfg.method})"
    )
    print(f"  oracle (true probabilities)   test click AUC {oracle:.4f}")
    floor = auc(click[test], f.rest_logit[test])
    print(f"  no affinity (rest exact)      test click AUC {floor:.4f}  gap {oracle - floor:.4f}")
    cols = (user, item, click)
    for name, fit_items in (("MAP users", False), ("MAP users and items", True)):
        start = time.perf_counter()
        users, items = fit_latents(f, train, cols, fit_items, args.iterations)
        a = auc(click[test], click_logit(f.rest_logit[test], users, items, user[test], item[test]))
        print(
            f"  {name:<29} test click AUC {a:.4f}  gap {oracle - a:.4f}  "
            f"({time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
