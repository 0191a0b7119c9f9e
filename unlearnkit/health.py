"""The check after every method: a model must not come back destroyed, or untouched, in silence.

Defaults tuned for one architecture can wreck another (a Hugging Face ViT at our ResNet's SGD
rate ends at chance), and a method whose guard stepped back returns the input weights. Neither is
an error — a user may want either — but both must be said: `run_method` attaches the warnings to
its result, `unlearnkit run` prints them and records them in results.json, and `unlearnkit.unlearn`
raises them as `UnlearnkitWarning`.

- **collapse**: on a seeded sample of the retain set and on the val set (each measured before and
  after), the accuracy kept less than a quarter of its margin over chance (1/classes), where the
  input model had a margin of at least 10 points;
- **unchanged**: no parameter moved at all;
- **stalled**: parameters moved, but on a seeded sample of the forget set no class probability
  moved by more than STALLED: the method made no difference a user could see. A saturated model
  (training loss near zero, as a long AdamW run leaves a small transformer) gives gradient
  methods at their default rates next to no gradient, and the returned model is the original in
  all but its bits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SAMPLE = 512  # images per set: enough to tell 10% from 60%, cheap beside any method
KEPT = 0.25  # a set collapsed when less than this share of its margin over chance is left
MIN_MARGIN = 0.10  # below this margin before, there was nothing to collapse
STALLED = 1e-3  # a probability change below this on every forget example is no change at all


class UnlearnkitWarning(UserWarning):
    """What `unlearnkit.unlearn` warns of: the model collapsed or did not change."""


def _sample(source, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    x = getattr(source, "x", None)  # a streamed retain set is not resident: not sampled
    if x is None or len(x) == 0:
        return None
    picked = np.sort(np.random.default_rng([seed, 0x4EA1]).permutation(len(x))[:SAMPLE])
    index = torch.from_numpy(picked).to(x.device)
    return x[index], source.y[index]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    from unlearnkit.train import predict_logits

    return float((predict_logits(model, x, precision="fp32").argmax(1) == y.cpu()).float().mean())


def unchanged(before: nn.Module, after: nn.Module) -> bool:
    mine = dict(after.named_parameters())
    return all(name in mine and torch.equal(p.detach().cpu(), mine[name].detach().cpu()) for name, p in before.named_parameters())


@torch.no_grad()
def largest_forget_change(before: nn.Module, after: nn.Module, task) -> float | None:
    """The largest change of any class probability on a seeded sample of the forget set (None
    where the forget set is not resident)."""
    from unlearnkit.train import predict_logits

    sample = _sample(task.forget, task.seed)
    if sample is None:
        return None
    x = sample[0]
    was, now = (torch.softmax(predict_logits(m, x, precision="fp32").float(), dim=1) for m in (before, after))
    return float((now - was).abs().max())


def collapses(before: nn.Module, after: nn.Module, task) -> dict[str, tuple[float, float]]:
    """The sets (retain, val) on which `after` collapsed, each with its accuracy before and after."""
    found = {}
    chance = 1.0 / task.num_classes
    for part in ("retain", "val"):
        sample = _sample(getattr(task, part), task.seed)
        if sample is None:
            continue
        was, now = _accuracy(before, *sample), _accuracy(after, *sample)
        if was - chance >= MIN_MARGIN and now - chance < KEPT * (was - chance):
            found[part] = (was, now)
    return found


def health_warnings(name: str, before: nn.Module, after: nn.Module, task, collapsed: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """The warnings for method `name`, which made `after` from `before` on `task` (empty when the
    model kept its accuracy and moved); `collapsed`: what `collapses` found, if already measured."""
    found = []
    if unchanged(before, after):
        found.append(f"{name} returned the input weights unchanged: nothing was unlearned (a guard may have stepped back; try a smaller learning rate)")
    elif (moved := largest_forget_change(before, after, task)) is not None and moved < STALLED:
        found.append(f"{name} barely changed the model: no class probability on the forget set moved by more than {moved:.1e}; a saturated model gives "
                     "its defaults next to no gradient: raise its lr or epochs with --set, or use `unlearnkit tune`")
    chance = 1.0 / task.num_classes
    for part, (was, now) in (collapses(before, after, task) if collapsed is None else collapsed).items():
        found.append(f"{name} collapsed the model: {part} accuracy {100 * was:.1f}% → {100 * now:.1f}% (chance {100 * chance:.1f}%); "
                     "its defaults may not fit this model: lower its lr with --set or `unlearnkit tune`")
    return found
