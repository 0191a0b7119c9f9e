"""Bring your own model and data: train a small CNN of your own on your own Dataset with a
plain PyTorch loop, then remove a deletion request's examples with unlearnkit and audit the
result against a model retrained without them.

    python examples/own_model.py [--method dummy-labels] [--out audit.json]

Everything here is yours except the two calls `unlearnkit.unlearn` and `unlearnkit.audit`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import unlearnkit


class Shapes(Dataset):
    """28x28 grey images of 3 classes (a bright square, a dark square, stripes), plus noise;
    the last `odd` images are one-off patterns with arbitrary labels: examples a model gets
    right only by memorizing them, as it does with people's unusual data."""

    def __init__(self, n: int, odd: int = 0, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.y = rng.integers(0, 3, n)
        images = rng.normal(128, 40, (n, 28, 28))
        images[self.y == 0, 8:20, 8:20] += 90
        images[self.y == 1, 8:20, 8:20] -= 90
        images[self.y == 2, :, ::4] += 70
        images[n - odd :] = rng.integers(0, 256, (odd, 7, 7)).repeat(4, 1).repeat(4, 2)
        self.x = torch.from_numpy(np.clip(images, 0, 255).astype(np.float32) / 255).unsqueeze(1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv_a, self.norm_a = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv_b, self.norm_b = nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32)
        self.classify = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x):
        x = torch.relu(self.norm_a(self.conv_a(x)))
        return self.classify(torch.relu(self.norm_b(self.conv_b(x))))


def train(dataset, epochs: int = 40, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        for x, y in DataLoader(dataset, batch_size=32, shuffle=True):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="dummy-labels", help=f"one of {', '.join(unlearnkit.list_methods())}")
    parser.add_argument("--out", default=None, help="write the audit as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(min(2, torch.get_num_threads()))
    data, test = Shapes(420, odd=20, seed=0), Shapes(150, seed=1)
    forget = Subset(data, range(400, 420))  # the deletion request: 20 of the odd examples
    retain = Subset(data, range(400))
    original = train(data)
    retrained = train(retain, seed=1)  # the gold standard, for the audit only

    unlearned = unlearnkit.unlearn(original, forget=forget, retain=retain, method=args.method, config={"epochs": 4}, batch_size=32)
    report = unlearnkit.audit(unlearned, forget=forget, test=test, retain=retain, original=original, reference=retrained).to_dict()

    signal = report["positive_control"]["signal"]
    attack = next((name for name, found in signal.items() if found), "lr-loss")  # one that finds the forget set on the original
    print(f"{'model':10s} {'forget':>7s} {'retain':>7s} {'test':>7s}  {attack} attack AUC, forget vs test [95% CI]")
    for name, row in report["models"].items():
        auc = report["attacks"][name][attack]["forget"]["auc"]
        print(f"{name:10s} {row['forget_acc']:7.1%} {row['retain_acc']:7.1%} {row['test_acc']:7.1%}  {auc['value']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]")
    print("positive control (the attack finds the forget set on the original better than on the retrained model):", signal)
    for reason in report["skipped"]:
        print("not computed:", reason)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
