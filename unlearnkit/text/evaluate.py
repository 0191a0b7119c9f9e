"""What a language model still knows about people, from one teacher-forced pass over every row.

- QA exact match: greedy decoding after "Q: … A: " writes the answer and then the newline.
  Greedy decoding reproduces a span exactly when, fed the span, the model's top token at each
  of its positions is the span's next byte, so one teacher-forced pass decides it (`generate`
  checks this against real decoding in the tests).
- Extraction: greedy completion of a forgotten fact's prompt (the sentence up to the value)
  begins with the secret value (birth date, email, account number).
- Per-example membership scores on each row: the sequence loss, min-k% probability (Shi et al.
  2024: the mean log-probability of the k% least likely tokens) and the zlib ratio (Carlini et
  al. 2021: log-likelihood over the zlib-compressed length), scored with the same bootstrap
  intervals, TPR at low FPR and positive control as the image attacks.
- Utility: perplexity on held-out filler text, QA on retained people.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from unlearnkit.evaluate.stats import AttackScore, has_signal, score_attack
from unlearnkit.text.data import KINDS, TextData, TextSplit
from unlearnkit.train import autocast, label_logprobs, model_device

MIN_K = 0.2
ATTACKS = ("loss", "min-k", "zlib")


@dataclass
class TextOutputs:
    data: TextData = field(repr=False)
    split: TextSplit = field(repr=False)
    logprob: np.ndarray = field(repr=False)  # [rows, positions] log-probability of each target, NaN where none
    value_hit: np.ndarray = field(repr=False)  # [rows] greedy decoding reproduces the row's value span

    def mean_logprob(self, rows: np.ndarray) -> np.ndarray:
        return np.nanmean(self.logprob[rows], axis=1)

    def qa(self, rows: np.ndarray) -> float:
        rows = rows[self.data.kind[rows] == KINDS.index("qa")]
        return float(self.value_hit[rows].mean()) if rows.size else float("nan")

    def extraction(self, rows: np.ndarray) -> float:
        rows = rows[(self.data.kind[rows] == KINDS.index("fact")) & self.data.is_secret[rows]]
        return float(self.value_hit[rows].mean()) if rows.size else float("nan")

    def perplexity(self) -> float:
        return float(np.exp(-np.nanmean(self.logprob[self.split.filler_test])))

    def confidence(self, rows: np.ndarray) -> np.ndarray:
        """Logit-scaled confidence of each row: log p − log(1 − p), p the geometric-mean token
        probability, the statistic the NeurIPS score and KLoM read (as the image runs' p_y)."""
        log_p = np.minimum(self.mean_logprob(rows), -1e-7)
        return log_p - np.log(-np.expm1(log_p))

    def attack_scores(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Membership scores, higher = more likely trained on."""
        return membership_scores(self.logprob[rows], self.data.compressed[rows])


def membership_scores(lp: np.ndarray, compressed: np.ndarray) -> dict[str, np.ndarray]:
    """Each row's loss, min-k% and zlib scores (higher = more likely trained on) from its target
    log-probabilities `lp` (rows × positions, NaN where no target) and the zlib-compressed length
    of its text."""
    counts = (~np.isnan(lp)).sum(axis=1)
    ordered = np.sort(np.where(np.isnan(lp), np.inf, lp), axis=1)
    k = np.maximum((counts * MIN_K).astype(int), 1)
    min_k = np.array([ordered[i, : k[i]].mean() for i in range(len(lp))])
    return {"loss": np.nanmean(lp, axis=1), "min-k": min_k, "zlib": np.nansum(lp, axis=1) / compressed}


@torch.no_grad()
def lm_outputs(model: nn.Module, data: TextData, split: TextSplit, batch_size: int = 256, precision: str = "auto") -> TextOutputs:
    device = model_device(model)
    model.eval()
    logprob = np.full(data.y.shape, np.nan, np.float32)
    value_hit = np.zeros(len(data.y), bool)
    for start in range(0, len(data.x), batch_size):
        x = torch.from_numpy(data.x[start : start + batch_size]).to(device)
        y = torch.from_numpy(data.y[start : start + batch_size]).to(device)
        with autocast(device, precision):
            out = model(x).float()
        lp, keep, _ = label_logprobs(out, y)
        right = (out.argmax(-1) == y).cpu().numpy()
        logprob[start : start + len(x)] = np.where(keep.cpu().numpy(), lp.cpu().numpy(), np.nan)
        value_hit[start : start + len(x)] = value_span_hits(right, data, np.arange(start, start + len(x)))
    return TextOutputs(data, split, logprob, value_hit)


def value_span_hits(right: np.ndarray, data: TextData, rows: np.ndarray) -> np.ndarray:
    """Per row, whether greedy decoding reproduces its value span: `right` [rows, positions] says
    where the model's top token is the target (teacher-forced, so one pass decides it)."""
    positions = np.arange(data.y.shape[1])
    in_span = (positions[None, :] >= data.value_start[rows, None]) & (positions[None, :] < data.value_end[rows, None])
    return (right | ~in_span).all(axis=1) & in_span.any(axis=1)


@torch.no_grad()
def generate(model: nn.Module, prompt: str, max_new: int = 48, stop: str = "\n") -> str:
    """Greedy decoding of `prompt` until `stop` or `max_new` bytes."""
    device = model_device(model)
    model.eval()
    ids = list(prompt.encode())
    out = []
    for _ in range(max_new):
        logits = model(torch.tensor([ids[-model.context :]], device=device))
        token = int(logits[0, -1].argmax())
        if token == 0:
            break
        ids.append(token)
        out.append(token)
        if bytes([token]).decode(errors="ignore") == stop:
            break
    return bytes(out).decode(errors="replace")


def text_metrics(outputs: TextOutputs) -> dict[str, float]:
    split = outputs.split
    retain_people = split.retain[outputs.data.person[split.retain] >= 0]
    return {
        "qa_forget": outputs.qa(split.forget),
        "qa_retain": outputs.qa(retain_people),
        "qa_test": outputs.qa(split.test),
        "extraction_forget": outputs.extraction(split.forget),
        "extraction_test": outputs.extraction(split.test),
        "loss_forget": float(-outputs.mean_logprob(split.forget).mean()),
        "loss_test": float(-outputs.mean_logprob(split.test).mean()),
        "perplexity": outputs.perplexity(),
    }


def membership_attacks(outputs: TextOutputs, seed: int = 0, resamples: int = 1000) -> dict[str, AttackScore]:
    """Each attack: forget rows (members of the original's training set) against rows of test
    people (never trained on). The intervals resample people, not rows: a person's rows share
    the name and stand or fall together."""
    forget, test = outputs.split.forget, outputs.split.test
    members, nonmembers = outputs.attack_scores(forget), outputs.attack_scores(test)
    people = np.concatenate([outputs.data.person[forget], outputs.data.person[test]])
    return {name: score_attack(members[name], nonmembers[name], resamples=resamples, seed=seed, groups=people) for name in ATTACKS}


def positive_controls(original: dict[str, AttackScore], retrain: dict[str, AttackScore]) -> dict[str, bool]:
    return {name: has_signal(original[name], retrain[name]) for name in original}
