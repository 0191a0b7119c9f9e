"""Unlearning rows of a table: scikit-learn's Wisconsin breast-cancer data (569 patients × 30
features, shipped inside the package), an MLP, a deletion request for 30 patients, two methods,
and the audit against an MLP retrained without them. The 30 records carry flipped diagnoses (a
planted effect): the original can only get them right by memorizing them, the retrained model
gets them wrong, so forgetting is visible.

    python examples/tabular.py
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import unlearnkit
from unlearnkit.train import Recipe, Source, fit


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))


def trained(x: np.ndarray, y: np.ndarray, seed: int = 0) -> nn.Module:
    model = mlp(seed)
    fit(model, Source(torch.from_numpy(x), torch.from_numpy(y)), Recipe(epochs=200, batch_size=32, lr=0.05, precision="fp32"))
    return model


def main() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = y.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    forget, retain, test = order[:30], order[30:400], order[400:]
    y[forget] = 1 - y[forget]
    original = trained(x[np.concatenate([forget, retain])], y[np.concatenate([forget, retain])])
    retrained = trained(x[retain], y[retain])
    print("model        forget  retain  test   lr-loss attack AUC [95% CI] (forget vs test rows)")
    for name, model in [("original", original), ("retrained", retrained)] + [
        (method, unlearnkit.unlearn(original, forget=(x[forget], y[forget]), retain=(x[retain], y[retain]), val=(x[test], y[test]), method=method))
        for method in ("finetune", "kl")
    ]:
        report = unlearnkit.audit(model, forget=(x[forget], y[forget]), test=(x[test], y[test]), retain=(x[retain], y[retain])).to_dict()
        row = report["models"]["unlearned"]
        score = report["attacks"]["unlearned"]["lr-loss"]["forget"]["auc"]  # the population attack fitted on retain vs test
        auc = f"{score['value']:.3f} [{score['ci95'][0]:.3f}, {score['ci95'][1]:.3f}]"
        print(f"{name:<12} {100 * row['forget_acc']:6.1f}  {100 * row['retain_acc']:6.1f}  {100 * row['test_acc']:5.1f}  {auc}")


if __name__ == "__main__":
    main()
