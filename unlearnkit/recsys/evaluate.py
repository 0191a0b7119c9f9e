"""What a recommender still knows about deleted users, and what it can still do for the others.

Ranking figures, at k = 10 (`K`) — a user's top-10 list is what a recommender shows:
- recall@k = |top k ∩ relevant| / min(k, |relevant|) (so that a perfect list scores 1 however
  many relevant items a user has), averaged over users;
- NDCG@k = Σ_{rank r ≤ k, item relevant} 1 / log2(r + 1), divided by its best possible value
  (the min(k, |relevant|) relevant items ranked first), averaged over users.
Held-out figures rank every item but the user's own training items (the usual protocol: a
recommender does not recommend what the user already has); `recall_forget_train` ranks every
item and asks whether the deleted users' own training items come first — the model recalling
them.

Figures per model:
- utility: `recall_retain`, `ndcg_retain` — retained users' held-out interactions;
- forgetting: `recall_forget`, `ndcg_forget` — the deleted users' held-out interactions (what
  the model infers about them), `recall_forget_train` — their training interactions;
- membership: the attack scores each of the deleted users' interactions by the item's rank
  percentile in that user's list (0 last, 1 first: comparable across users, whose raw scores are
  not); members are their training interactions, non-members their held-out ones — drawn from
  the same taste, so a model that never saw them cannot tell the two apart (AUC near 0.5 on the
  retrained model). `score_attack` gives AUC with 95% bootstrap intervals, resampling users
  (a user's interactions are not independent evidence).
Every figure is also given as its gap to the retrained model's (`gap_<figure>` = model − retrain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from unlearnkit.evaluate.stats import AttackScore, has_signal, score_attack
from unlearnkit.recsys.data import InteractionLog, UserSplit
from unlearnkit.train import model_device

K = 10
FIGURES = ("recall_retain", "ndcg_retain", "recall_forget", "ndcg_forget", "recall_forget_train", "attack_auc")


@torch.no_grad()
def all_scores(model: nn.Module, users: np.ndarray, batch_size: int = 1024) -> torch.Tensor:
    """(len(users), items) float32 scores of `model` in eval mode, on the CPU."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    ids = torch.from_numpy(np.asarray(users, dtype=np.int64))
    out = torch.cat([model(ids[start : start + batch_size].to(device)).float().cpu() for start in range(0, len(ids), batch_size)])
    model.train(was_training)
    return out


def ranking_metrics(scores: torch.Tensor, relevant: torch.Tensor, exclude: torch.Tensor | None = None, k: int = K) -> dict[str, float]:
    """Mean recall@k and NDCG@k over the users (rows) with at least one relevant item."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, -math.inf)
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hits = relevant.gather(1, top).float()
    counts = relevant.sum(1)
    has = counts > 0
    ideal = counts.clamp(max=k)
    discount = 1 / torch.log2(torch.arange(2, top.shape[1] + 2, dtype=torch.float32))
    dcg = (hits * discount).sum(1)
    best = torch.cumsum(discount, 0)[(ideal - 1).clamp(min=0)]
    return {"recall": float((hits.sum(1)[has] / ideal[has]).mean()), "ndcg": float((dcg[has] / best[has]).mean())}


def rank_percentiles(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> np.ndarray:
    """The share of the catalogue that `scores[row]` ranks below each (row, item): 1 = first."""
    picked = scores[rows, items]
    below = (scores[rows] < picked[:, None]).sum(1)
    return (below.double() / (scores.shape[1] - 1)).numpy()


@dataclass
class RecsysOutputs:
    """One model's figures and its membership-attack score."""

    figures: dict[str, float]
    attack: AttackScore


def evaluate_recommender(model: nn.Module, log: InteractionLog, split: UserSplit, *, seed: int = 0, resamples: int = 1000) -> RecsysOutputs:
    figures = {}
    retain, forget = split.retain_users, split.forget_users
    scores = all_scores(model, retain)
    held = ranking_metrics(scores, log.matrix(retain, "test"), log.matrix(retain, "train"))
    figures["recall_retain"], figures["ndcg_retain"] = held["recall"], held["ndcg"]
    scores = all_scores(model, forget)
    trained, tested = log.matrix(forget, "train"), log.matrix(forget, "test")
    held = ranking_metrics(scores, tested, trained)
    figures["recall_forget"], figures["ndcg_forget"] = held["recall"], held["ndcg"]
    figures["recall_forget_train"] = ranking_metrics(scores, trained)["recall"]
    member_users, member_items = log.rows(forget, "train")
    other_users, other_items = log.rows(forget, "test")
    row = lambda users: torch.from_numpy(np.searchsorted(forget, users))  # noqa: E731
    attack = score_attack(
        rank_percentiles(scores, row(member_users), torch.from_numpy(member_items)),
        rank_percentiles(scores, row(other_users), torch.from_numpy(other_items)),
        resamples=resamples, seed=seed, groups=np.concatenate([member_users, other_users]),
    )
    figures["attack_auc"] = attack.values["auc"]
    return RecsysOutputs(figures, attack)


def add_gaps(rows: list[dict], reference: str = "retrain") -> None:
    """`gap_<figure>` = the row's figure − the reference row's, for every figure."""
    base = next(row for row in rows if row["name"] == reference)
    for row in rows:
        row.update({f"gap_{figure}": row[figure] - base[figure] for figure in FIGURES})


def positive_control(original: AttackScore, retrain: AttackScore) -> dict:
    """Does the attack find the deleted users' interactions on the original above the retrained
    model (paired bootstrap, one-sided 95%)? Only then do its AUCs on the other models mean anything."""
    passed = has_signal(original, retrain)
    note = ("the attack tells the deleted users' training interactions from their held-out ones on the original above the retrained model (paired bootstrap, 95%)" if passed
            else "the attack does not tell the deleted users' interactions apart on the original better than on the retrained model: its AUCs prove nothing here")
    return {"passed": passed, "note": note, "original_auc": original.values["auc"], "retrain_auc": retrain.values["auc"]}
