"""`--audit relearn,quantize` for language models: does a forgotten person come back?

- **relearn**: per seed, for each forgotten person, the rows of a random `fraction` of their
  attributes (at least one) are the *relearn* part, the rows of their other attributes the
  *measured* part. A copy of each model is fine-tuned for `steps` steps on batches drawn from
  the relearn part (AdamW at `lr`, the optimizer the language models are trained with), and the
  share of measured rows whose value greedy decoding reproduces (QA answers and extracted
  secrets) is read before and after every step. Each attribute's value is drawn independently,
  so a model that never knew the person learns nothing about the other attributes from the
  relearned ones: what comes back was hidden, not forgotten. The figure is the gap in recovery
  (mean over the steps) between each model and the retrained one under the identical attack,
  with a 95% t-interval over the seeds, as for images (`unlearnkit.evaluate.relearn`).
- **quantize**: each model's weights through int8, int4 and 50% magnitude pruning
  (`unlearnkit.evaluate.compress`), then QA and extraction on the forgotten people, QA on
  retained people and perplexity; the forget gaps are read against the retrained model treated
  the same way (Zhang et al., ICLR 2025: 4-bit quantization brings back "forgotten" knowledge).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.evaluate.compress import TRANSFORMS, compressed
from unlearnkit.evaluate.relearn import RelearnOptions, paired_interval
from unlearnkit.progress import say
from unlearnkit.text.data import IGNORE, KINDS, TextData, TextSplit
from unlearnkit.text.evaluate import lm_outputs, text_metrics, value_span_hits
from unlearnkit.train import model_device


def relearn_parts(data: TextData, split: TextSplit, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of forgotten people: those of the attributes to relearn, and the measured rows (QA
    and facts with a value) of their other attributes."""
    rng = np.random.default_rng([seed, 31])
    relearn, measured = [], []
    valued = np.isin(data.kind, [KINDS.index("fact"), KINDS.index("qa")])
    for person in split.forget_people:
        rows = split.forget[(data.person[split.forget] == person) & valued[split.forget]]
        attributes = np.unique(data.attribute[rows])
        if attributes.size < 2:
            continue
        chosen = rng.permutation(attributes)[: max(1, min(attributes.size - 1, round(fraction * attributes.size)))]
        inside = np.isin(data.attribute[rows], chosen)
        relearn.append(rows[inside])
        measured.append(rows[~inside])
    join = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)  # noqa: E731
    return join(relearn), join(measured)


@torch.no_grad()
def value_hits(model: nn.Module, data: TextData, rows: np.ndarray) -> float:
    """Share of `rows` whose value span greedy decoding reproduces (one teacher-forced pass)."""
    device = model_device(model)
    model.eval()
    x, y = torch.from_numpy(data.x[rows]).to(device), torch.from_numpy(data.y[rows]).to(device)
    return float(value_span_hits((model(x).float().argmax(-1) == y).cpu().numpy(), data, rows).mean())


def relearn_curve(model: nn.Module, data: TextData, relearn: np.ndarray, measured: np.ndarray, options: RelearnOptions, seed: int) -> list[float]:
    attacked = copy.deepcopy(model)
    device = model_device(attacked)
    optimizer = torch.optim.AdamW(attacked.parameters(), lr=options.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    curve = [value_hits(attacked, data, measured)]
    for _ in range(options.steps):
        batch = relearn[torch.randint(len(relearn), (options.batch_size,), generator=generator).numpy()]
        attacked.train()
        optimizer.zero_grad(set_to_none=True)
        x, y = torch.from_numpy(data.x[batch]).to(device), torch.from_numpy(data.y[batch]).to(device)
        F.cross_entropy(attacked(x).float().flatten(0, 1), y.flatten(), ignore_index=IGNORE).backward()
        optimizer.step()
        curve.append(value_hits(attacked, data, measured))
    return curve


def text_relearn_audit(models: dict[str, nn.Module], data: TextData, split: TextSplit, options: RelearnOptions, seed: int, reference: str = "retrain") -> dict:
    curves: dict[str, list[list[float]]] = {name: [] for name in models}
    sizes = None
    for repetition in range(options.seeds):
        relearn, measured = relearn_parts(data, split, options.fraction, seed + repetition)
        if relearn.size == 0 or measured.size == 0:
            return {"options": options.model_dump(), "skipped": "no forgotten person has two attributes: nothing to relearn from and measure"}
        sizes = sizes or (int(relearn.size), int(measured.size))
        for name, model in models.items():
            curves[name].append(relearn_curve(model, data, relearn, measured, options, seed + repetition))
    recovery = lambda curve: float(np.mean(curve[1:]))  # noqa: E731
    report = {"options": options.model_dump(), "relearn_rows": sizes[0], "measured_rows": sizes[1], "models": {}}
    for name, mine in curves.items():
        gaps = [recovery(a) - recovery(b) for a, b in zip(mine, curves[reference])]
        report["models"][name] = {
            "accuracy_before": float(np.mean([c[0] for c in mine])), "accuracy_after": float(np.mean([c[-1] for c in mine])),
            "recovery": float(np.mean([recovery(c) for c in mine])), "gap": float(np.mean(gaps)), "gap_ci95": paired_interval(gaps),
            "curves": mine,
        }
    return report


def text_robustness_audits(models: dict[str, nn.Module], data: TextData, split: TextSplit, seed: int, audits: tuple[str, ...],
                           relearn: RelearnOptions | None = None) -> dict:
    found = {}
    if "relearn" in audits:
        relearn = relearn or RelearnOptions()
        say(f"audit relearn: {len(models)} language models × {relearn.seeds} seeds …")
        found["relearn"] = text_relearn_audit(models, data, split, relearn, seed)
    if "quantize" in audits:
        say(f"audit quantize: {len(models)} language models × {len(TRANSFORMS)} transforms …")
        keys = ("qa_forget", "extraction_forget", "qa_retain", "perplexity")
        table = {name: {t: {k: v for k, v in text_metrics(lm_outputs(compressed(model, t), data, split, precision="fp32")).items() if k in keys}
                        for t in TRANSFORMS} for name, model in models.items()}
        for row in table.values():
            for t, values in row.items():
                values["forget_gap"] = values["qa_forget"] - table["retrain"][t]["qa_forget"]
                values["extraction_gap"] = values["extraction_forget"] - table["retrain"][t]["extraction_forget"]
        found["quantize"] = {"transforms": list(TRANSFORMS), "models": table}
    return found


def text_headline(found: dict, name: str, margin: float) -> dict:
    """A text row's robustness columns: the relearning gap (and whether it held) and the QA-forget
    and extraction gaps to the retrained model after each transform."""
    row = {}
    if "relearn" in found and "models" in found["relearn"]:
        entry = found["relearn"]["models"][name]
        row["relearn_gap"], row["relearn_gap_ci95"] = entry["gap"], entry["gap_ci95"]
        row["relearn_held"] = None if entry["gap_ci95"] is None else bool(entry["gap_ci95"][0] <= margin)
    if "quantize" in found:
        for t, values in found["quantize"]["models"][name].items():
            row[f"{t}_forget_gap"], row[f"{t}_extraction_gap"] = values["forget_gap"], values["extraction_gap"]
    return row
