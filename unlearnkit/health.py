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

Language models (labels of shape (rows, positions), -100 where there is no target) get the same
checks on a smaller sample: accuracy is the share of rows that greedy decoding writes exactly
(every labelled token the top prediction: the QA exact match of the facts evidence and of TOFU;
chance taken as nil), and the probabilities watched are the labels' own. A method that leaves
the retained answers at 40% of their tokens but none of them whole has destroyed them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SAMPLE = 512  # images per set: enough to tell 10% from 60%, cheap beside any method
SAMPLE_SEQUENCES = 64  # rows of a language model's set: thousands of labelled tokens
KEPT = 0.25  # a set collapsed when less than this share of its margin over chance is left
MIN_MARGIN = 0.10  # below this margin before, there was nothing to collapse
STALLED = 1e-3  # a probability change below this on every forget example is no change at all


class UnlearnkitWarning(UserWarning):
    """What `unlearnkit.unlearn` warns of: the model collapsed or did not change."""


def _sample(source, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A seeded sample of a set, resident or streamed (a streamed set is read item by item: the
    same images as when it is resident, so streaming never changes what the checks find)."""
    count = len(source) if source is not None else 0
    if count == 0:
        return None
    order = np.random.default_rng([seed, 0x4EA1]).permutation(count)

    def rows(picked: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = getattr(source, "x", None)  # None: a StreamSource, which reads items through batch()
        if x is None:
            return source.batch(torch.from_numpy(picked))
        index = torch.from_numpy(picked).to(x.device)
        return x[index], source.y[index]

    sequences = rows(order[:1])[1].ndim == 2
    return rows(np.sort(order[: SAMPLE_SEQUENCES if sequences else SAMPLE]))


@torch.no_grad()
def _read(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(whether each prediction is right, the probabilities to watch): per image, its top class
    against the label, and all its class probabilities; per sequence, whether greedy decoding
    writes every label (the top token is the label at each labelled position), and each label's
    probability (a few rows at a time: a vocabulary of 150,000 makes the logits large)."""
    from unlearnkit.train import label_logprobs, predict_logits

    y = y.cpu()
    if y.ndim == 1:
        out = predict_logits(model, x, precision="fp32")
        return out.argmax(1) == y, torch.softmax(out, dim=1)
    right, probability = [], []
    was_training = model.training
    model.eval()
    for start in range(0, len(x), 8):
        out, labels = model(x[start : start + 8]), y[start : start + 8]
        out = (out.logits if hasattr(out, "logits") else out).float().cpu()
        logprob, keep, whole = label_logprobs(out, labels)
        right.append(whole[keep.any(dim=1)])
        probability.append(logprob[keep].exp())
    model.train(was_training)
    return torch.cat(right), torch.cat(probability)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    right, _ = _read(model, x, y)
    return float(right.float().mean()) if right.numel() else float("nan")


def unchanged(before: nn.Module, after: nn.Module) -> bool:
    mine = dict(after.named_parameters())
    return all(name in mine and torch.equal(p.detach().cpu(), mine[name].detach().cpu()) for name, p in before.named_parameters())


def largest_forget_change(before: nn.Module, after: nn.Module, task) -> float | None:
    """The largest change of any watched probability (`_read`) on a seeded sample of the forget
    set (None where the forget set is empty or has nothing to watch)."""
    sample = _sample(task.forget, task.seed)
    if sample is None:
        return None
    was, now = _read(before, *sample)[1], _read(after, *sample)[1]
    return float((now - was).abs().max()) if was.numel() else None


def _chance(task) -> float:
    """One over the classes; nil for sequences (a whole answer right by chance)."""
    sequences = getattr(getattr(task.retain, "y", None), "ndim", 1) == 2
    return 0.0 if sequences or not task.num_classes else 1.0 / task.num_classes


def collapses(before: nn.Module, after: nn.Module, task) -> dict[str, tuple[float, float]]:
    """The sets (retain, val) on which `after` collapsed, each with its accuracy before and after."""
    found = {}
    chance = _chance(task)
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
    chance = _chance(task)
    for part, (was, now) in (collapses(before, after, task) if collapsed is None else collapsed).items():
        found.append(f"{name} collapsed the model: {part} accuracy {100 * was:.1f}% → {100 * now:.1f}% (chance {100 * chance:.1f}%); "
                     f"its values may not fit this model or forget set: change them with --set {name}.FIELD=VALUE (`unlearnkit methods` lists its fields; "
                     "for a gradient method, a smaller lr) or search them with `unlearnkit tune`")
    return found
