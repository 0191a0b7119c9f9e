"""TOFU's data format, both ways, and its figures: truth ratio, forget quality, model utility,
ROUGE-L recall.

Reference: locuslab/tofu @ bdc209e (Maini, Feng, Schwarzschild, Lipton, Kolter: "TOFU: A Task of
Fictitious Unlearning for LLMs", COLM 2024) and its data set (the Hugging Face dataset
locuslab/TOFU).

Format. JSON lines, one question a line: `question`, `answer`; the `*_perturbed` files add
`paraphrased_answer` (the answer reworded) and `perturbed_answer` (a list: the paraphrase with
wrong facts). Splits: `full`; `forgetXX` and `retainYY` with XX + YY = 100 (data_module.py line
42), the forget sets the last authors, nested; `forgetXX_perturbed` and `retain_perturbed` for
evaluation (config/eval_everything.yaml lines 5-23). `read_qa` reads these files unchanged
(fields other than these are ignored, as TOFU's loader ignores them); `write_tofu` writes the
facts corpus in the same layout, plus `heldout.json` (people never in `full`: the non-members the
membership attacks need; TOFU has none) and, on every row, `subject` (who it is about: the
attacks' intervals resample people, not rows).

Figures, from each row's answer tokens' mean negative log-likelihood (evaluate_util.py lines
15-97 and 171-173: the labels are the answer's tokens and one end-of-sequence token, the loss the
mean over them; `text/hf.py` tokenizes as data_module.py lines 8-32 does):
- Probability: the mean over rows of exp(−mean NLL) (utils.py lines 102-104).
- ROUGE-L recall of the greedy generation against the answer (evaluate_util.py lines 348-358).
  Departure: `rouge_score` stems words with Porter's stemmer (use_stemmer=True); we lowercase and
  split on non-alphanumerics as its tokenizer does, without stemming (no extra dependency); on
  answers that are names, dates and numbers the two agree.
- Truth ratio of a question: R = mean over perturbed answers of P(perturbed)^(1/|a|) divided by
  P(paraphrased)^(1/|a|) (utils.py lines 117-127, the arithmetic mean over the perturbed answers);
  its score on the forget set is mean(min(R, 1/R)), on the retain set mean(max(0, 1 − R))
  (lines 129-133).
- Forget quality: the p-value of the two-sample Kolmogorov–Smirnov test between the unlearned
  model's and the retrained (reference) model's statistics exp(mean perturbed NLL − paraphrased
  NLL) on the forget questions (utils.py lines 142-158; the same in aggregate_eval_stat.py lines
  10-26). Note the code's statistic: the geometric mean over the perturbed answers, inverted; a
  KS test is unchanged by a monotone map of both samples, so only the geometric mean matters.
- Model utility: the harmonic mean of retain Probability, retain ROUGE-L recall and retain truth
  ratio score (utils.py lines 135-139). Departure: TOFU's takes nine numbers, these three on the
  retain set and on its real-authors and world-facts sets; we have only the retain set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes

PERTURBED = 5  # perturbed answers per question, as in TOFU's files


@dataclass(frozen=True)
class QAFormat:
    """How a question and its answer become one text (TOFU's config/model_config.yaml keys; the
    defaults are its phi, stablelm and pythia families'): question_start_tag + question +
    question_end_tag, then answer_tag + answer; the loss is on the second part."""

    question_start_tag: str = "Question: "
    question_end_tag: str = "\n"
    answer_tag: str = "Answer: "

    @classmethod
    def of(cls, template: "QAFormat | dict | None") -> "QAFormat":
        if template is None or isinstance(template, QAFormat):
            return template or cls()
        if not isinstance(template, dict) or set(template) - set(cls.__dataclass_fields__):
            raise UnlearnkitError(f"template {template!r} is not a dict of {', '.join(cls.__dataclass_fields__)} (TOFU's model_config.yaml keys)")
        return cls(**template)


def read_qa(data, name: str) -> list[dict]:
    """Question/answer rows from a list of dicts or a JSON-lines file in TOFU's format, checked:
    every row has a string `question` and `answer`; `paraphrased_answer` (a string) and
    `perturbed_answer` (a list of strings) where given."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise UnlearnkitError(f"{name}: {path} does not exist; give a JSON-lines file in TOFU's format (one {{\"question\", \"answer\"}} a line) or a list of dicts")
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise UnlearnkitError(f"{name}: {path} line {number} is not JSON ({error.msg}); TOFU's files hold one JSON object a line") from None
        where = lambda i: f"{path} line {i + 1}"  # noqa: E731
    elif isinstance(data, (list, tuple)):
        rows, where = list(data), (lambda i: f"row {i}")
    else:
        raise UnlearnkitError(f"{name} is a {type(data).__name__}; give a list of {{'question', 'answer'}} dicts or the path of a TOFU-format JSON-lines file")
    if not rows:
        raise UnlearnkitError(f"{name} holds no rows; give at least one question and answer")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UnlearnkitError(f"{name} {where(i)} is a {type(row).__name__}, not a dict with 'question' and 'answer'")
        for key in ("question", "answer"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise UnlearnkitError(f"{name} {where(i)} has no '{key}' string (keys: {', '.join(map(str, row)) or 'none'}); every row needs 'question' and 'answer'")
        if "paraphrased_answer" in row and not isinstance(row["paraphrased_answer"], str):
            raise UnlearnkitError(f"{name} {where(i)}: 'paraphrased_answer' is a {type(row['paraphrased_answer']).__name__}; give a string")
        perturbed = row.get("perturbed_answer")
        if perturbed is not None and not (isinstance(perturbed, str) or (isinstance(perturbed, list) and perturbed and all(isinstance(p, str) for p in perturbed))):
            raise UnlearnkitError(f"{name} {where(i)}: 'perturbed_answer' must be a non-empty list of strings")
    return [dict(row, perturbed_answer=[row["perturbed_answer"]]) if isinstance(row.get("perturbed_answer"), str) else row for row in rows]


def has_perturbations(rows: list[dict]) -> bool:
    return all("paraphrased_answer" in r and r.get("perturbed_answer") for r in rows)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    return path


def tofu_rows(corpus) -> list[dict]:
    """Per person of the facts corpus (`unlearnkit.text.facts.Corpus`), one row per attribute, in
    TOFU's perturbed layout: the answer a fact sentence (a template drawn per person and
    attribute, so that every phrasing is trained on), the paraphrase another template with the
    same value, and the perturbed answers that paraphrase with the values other people have for
    the attribute (distinct, never the true one)."""
    from unlearnkit.text.facts import ATTRIBUTES, TEMPLATES, render

    rng = np.random.default_rng([corpus.spec.seed, 3207])
    rows = []
    for person, (name, values) in enumerate(zip(corpus.names, corpus.attributes)):
        for attribute in ATTRIBUTES:
            facts, question = TEMPLATES[attribute]
            first, second = rng.permutation(len(facts))[:2]
            others = sorted({v[attribute] for v in corpus.attributes} - {values[attribute]})
            wrong = [others[i] for i in rng.permutation(len(others))[:PERTURBED]]
            sentence = lambda template, value: render(facts[template], name, value)[0].rstrip("\n")  # noqa: E731
            rows.append({
                "question": question.format(name=name), "answer": sentence(first, values[attribute]),
                "paraphrased_answer": sentence(second, values[attribute]), "perturbed_answer": [sentence(second, v) for v in wrong],
                "subject": name,
            })
    return rows


def write_tofu(corpus, out_dir: str | Path, forget: tuple[int, ...] = (10,)) -> dict[str, Path]:
    """The facts corpus as TOFU's files under `out_dir`: full.json (every trained person),
    forgetXX.json / retainYY.json for each XX in `forget` (the last XX% of the trained people,
    at least one, nested as TOFU's), forgetXX_perturbed.json, retain_perturbed.json (the people
    retained by every split) and heldout.json (the held-out people, never in full.json). Returns
    {split name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = tofu_rows(corpus)
    per_person = len(rows) // len(corpus.names)
    of = lambda people: [r for p in people for r in rows[p * per_person : (p + 1) * per_person]]  # noqa: E731
    plain = lambda chosen: [{"question": r["question"], "answer": r["answer"]} for r in chosen]  # noqa: E731
    trained = [p for p in range(len(corpus.names)) if p not in set(corpus.heldout.tolist())]
    written = {"full": write_jsonl(out / "full.json", plain(of(trained))), "heldout": write_jsonl(out / "heldout.json", of(corpus.heldout.tolist()))}
    kept = trained
    for percent in sorted(set(forget)):
        count = max(1, round(percent / 100 * len(trained)))
        if not 0 < percent < 100 or count >= len(trained):
            raise UnlearnkitError(f"forget {percent}% of {len(trained)} trained people leaves none retained; pick a percentage in 1–99 that keeps some")
        gone, rest = trained[-count:], trained[:-count]
        written[f"forget{percent:02d}"] = write_jsonl(out / f"forget{percent:02d}.json", plain(of(gone)))
        written[f"retain{100 - percent:02d}"] = write_jsonl(out / f"retain{100 - percent:02d}.json", plain(of(rest)))
        written[f"forget{percent:02d}_perturbed"] = write_jsonl(out / f"forget{percent:02d}_perturbed.json", of(gone))
        kept = [p for p in kept if p in rest]
    written["retain_perturbed"] = write_jsonl(out / "retain_perturbed.json", of(kept))
    return written


# --- figures ---------------------------------------------------------------------------------

def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenizer, without stemming: lowercase, non-alphanumerics as spaces."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def rouge_l_recall(generated: str, reference: str) -> float:
    """Longest common subsequence of the two texts' tokens over the reference's token count."""
    ref, gen = rouge_tokens(reference), rouge_tokens(generated)
    if not ref or not gen:
        return 0.0
    row = [0] * (len(gen) + 1)
    for r in ref:
        previous = 0
        for j, g in enumerate(gen, 1):
            previous, row[j] = row[j], previous + 1 if r == g else max(row[j], row[j - 1])
    return row[-1] / len(ref)


def truth_ratio(paraphrased_nll: np.ndarray, perturbed_nll: list[np.ndarray]) -> np.ndarray:
    """Per question: the mean over its perturbed answers of exp(−mean NLL) over exp(−the
    paraphrase's mean NLL) (utils.py lines 124-127)."""
    return np.array([np.exp(-np.asarray(p)).mean() for p in perturbed_nll]) / np.exp(-np.asarray(paraphrased_nll))


def ks_statistic(paraphrased_nll: np.ndarray, perturbed_nll: list[np.ndarray]) -> np.ndarray:
    """The per-question values TOFU's forget quality compares: exp(mean perturbed NLL −
    paraphrased NLL) (utils.py lines 146-155)."""
    return np.exp(np.array([np.mean(p) for p in perturbed_nll]) - np.asarray(paraphrased_nll))


def forget_quality(unlearned: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The two-sample KS test of the two models' `ks_statistic` on the forget questions: its
    p-value is TOFU's forget quality (high: indistinguishable from the retrained model)."""
    from scipy.stats import ks_2samp

    test = ks_2samp(unlearned, reference)
    return {"forget_quality": float(test.pvalue), "ks_statistic": float(test.statistic)}


def model_utility(probability: float, rouge: float, truth_score: float) -> float:
    """The harmonic mean of the three retain figures (0 when one is 0)."""
    values = np.array([probability, rouge, truth_score], float)
    if np.isnan(values).any():
        return float("nan")
    return 0.0 if (values <= 0).any() else float(len(values) / (1 / values).sum())
