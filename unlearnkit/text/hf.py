"""Hugging Face causal language models through the text methods: `unlearn_lm` and `audit_lm`.

    import unlearnkit
    new = unlearnkit.unlearn_lm(model, tokenizer, forget="forget10.json", retain="retain90.json",
                                method="npo", config={"lr": 1e-5}, seed=0)        # model untouched
    adapter = unlearnkit.unlearn_lm(model, tokenizer, forget=F, retain=R, lora={"r": 8})
    report = unlearnkit.audit_lm(new, tokenizer, forget="forget10_perturbed.json",
                                 retain="retain_perturbed.json", test=T, original=model, reference=retrained)
    report.to_dict()

`forget`, `retain`, `test`: lists of {"question", "answer"} dicts or JSON-lines files in TOFU's
format (`unlearnkit.text.tofu`). Each row is tokenized as TOFU does (locuslab/tofu @ bdc209e,
data_module.py lines 8-32): question_start_tag + question + question_end_tag, then answer_tag +
answer, tokenized with the tokenizer's special tokens, one end-of-sequence token appended; the
labels are the tokens after the question's (the answer tag, the answer, the end token), -100
elsewhere. Rows are padded on the right and shifted as the facts rows are (`text/data.py`):
x = the tokens but the last, y = the labels after the first. Right padding needs no attention
mask for the positions that carry a label (`unlearnkit.models.hf`).

The model goes to the registered text methods unchanged (`run_method(..., modality="text")`)
inside `CausalLMLogits`, which returns its logits. The `idk` method's refusal rows are the forget
questions answered "I don't know." (TOFU's idk method draws a refusal from data/idontknow.jsonl;
we use one). `rmu` steers a decoder layer's output through a hook on the model's layer list and
trains the MLP output projections it finds there (`text/methods/rmu.py`).

LoRA (`lora=`): the methods train a `peft` adapter on a copy of the model; the base weights stay
bitwise as they were (their gradients are never computed), and the return is the `peft` model
(or, with `merge=True`, the base model with the adapter merged in). Removing the adapter
(`peft_model.unload()`, or `delete_adapter`) gives back exactly the model before unlearning; and an
adapter that was trained *on* the data is deleted exactly the same way: dropping it restores the
base model, which never saw that data — exact unlearning of what only the adapter learned.

`audit_lm` measures TOFU's figures (`unlearnkit.text.tofu`: QA exact match, ROUGE-L recall,
answer probability, truth ratio, forget quality, model utility) and the text runs' membership
attacks (`text/evaluate.py`: loss, min-k%, zlib, scored on the answer tokens with
`evaluate.stats.score_attack`) of forget against test rows. QA exact match is teacher-forced, as
`text/evaluate.py`'s value hit: greedy decoding from the question writes exactly the labelled
tokens (answer tag, answer, end token) when the model's top token at each labelled position is
the label, which one forward pass decides (the tests check it against decoding). ROUGE-L needs
the decoded text: greedy decoding from the question's tokens, with the model's `generate` where
it has one (prompts grouped by length, so nothing is padded).
"""

from __future__ import annotations

import copy
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.train import IGNORE_INDEX as IGNORE, label_logprobs

REFUSAL = "I don't know."


# --- rows ------------------------------------------------------------------------------------

@dataclass
class Encoded:
    """Token sequences (question, answer, end token) and how many of their first tokens are the
    question's (no label there)."""

    ids: list[list[int]]
    prompt: list[int]

    def rows(self, width: int | None = None, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(x, y): x the tokens but the last, right-padded with `pad`; y the labels after the first."""
        width = width or max(len(s) for s in self.ids) - 1
        x = np.full((len(self.ids), width), pad, np.int64)
        y = np.full((len(self.ids), width), IGNORE, np.int64)
        for row, (ids, prompt) in enumerate(zip(self.ids, self.prompt)):
            x[row, : len(ids) - 1] = ids[:-1]
            y[row, prompt - 1 : len(ids) - 1] = ids[prompt:]
        return x, y

    @property
    def width(self) -> int:
        return max(len(s) for s in self.ids) - 1


def special_ids(tokenizer) -> tuple[int, int]:
    """(end-of-sequence id, padding id): TOFU ends every answer with the end token and pads with
    it where the tokenizer has no padding token."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise UnlearnkitError(f"tokenizer {type(tokenizer).__name__} has no eos_token; set one (e.g. tokenizer.eos_token = '</s>', a token of its vocabulary): TOFU's rows end each answer with it")
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(eos), int(eos if pad is None else pad)


def encode(tokenizer, questions: list[str], answers: list[str], fmt, context: int | None = None, name: str = "rows") -> Encoded:
    """TOFU's tokenization (data_module.py lines 8-32) of question/answer pairs."""
    if not callable(tokenizer):
        raise UnlearnkitError(f"tokenizer is a {type(tokenizer).__name__}; give a Hugging Face tokenizer (callable on text, with eos_token_id)")
    eos, _ = special_ids(tokenizer)
    ids, prompt = [], []
    for i, (question, answer) in enumerate(zip(questions, answers)):
        head = fmt.question_start_tag + question + fmt.question_end_tag
        asked = len(tokenizer(head, add_special_tokens=True)["input_ids"])
        full = list(tokenizer(head + fmt.answer_tag + answer, add_special_tokens=True)["input_ids"]) + [eos]
        if len(full) <= asked:
            raise UnlearnkitError(f"{name} row {i}: the answer {answer!r} adds no tokens after the question; give a non-empty answer")
        if context is not None and len(full) - 1 > context:
            raise UnlearnkitError(f"{name} row {i} is {len(full)} tokens long and does not fit the model's context of {context}; shorten it")
        ids.append(full)
        prompt.append(asked)
    return Encoded(ids, prompt)


def _context(model: nn.Module) -> int | None:
    from unlearnkit.models.hf import CausalLMLogits

    context = (model if isinstance(model, CausalLMLogits) else CausalLMLogits(model)).context
    return None if context >= 1 << 30 else context


def _check_model(model, tokenizer, encoded: Encoded) -> None:
    if not isinstance(model, nn.Module):
        raise UnlearnkitError(f"model is a {type(model).__name__}; give a torch causal language model (a transformers AutoModelForCausalLM)")
    top = max(max(s) for s in encoded.ids)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(vocab, int) and top >= vocab:
        raise UnlearnkitError(f"the tokenizer gives token id {top} but the model's vocabulary has {vocab} entries; use the tokenizer the model was trained with")


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


# --- training and unlearning ------------------------------------------------------------------

def qa_source(model: nn.Module, tokenizer, data, name: str = "data", template=None):
    """A training source (`unlearnkit.train.Source`) of question/answer rows, on the model's device."""
    from unlearnkit.text.tofu import QAFormat, read_qa
    from unlearnkit.train import Source

    rows = read_qa(data, name)
    encoded = encode(tokenizer, [r["question"] for r in rows], [r["answer"] for r in rows], QAFormat.of(template), _context(model), name)
    _check_model(model, tokenizer, encoded)
    x, y = encoded.rows(pad=special_ids(tokenizer)[1])
    device = _device(model)
    return Source(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))


def finetune_lm(model: nn.Module, tokenizer, data, *, epochs: float = 20, lr: float = 3e-3, batch_size: int = 16, weight_decay: float = 0.0,
                seed: int = 0, template=None, precision: str = "fp32"):
    """Fine-tune `model` in place on question/answer rows (TOFU's finetune.py: the answer tokens'
    next-token loss, AdamW), through the training loop; returns its `FitReport`. The defaults
    suit a small model from random init; TOFU fine-tunes a pretrained LLM 5 epochs at lr 1e-5."""
    from unlearnkit.models.hf import CausalLMLogits
    from unlearnkit.train import Recipe, fit

    source = qa_source(model, tokenizer, data, "data", template)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, weight_decay=weight_decay, optimizer="adamw", schedule="onecycle", warmup=0.05, precision=precision)
    return fit(CausalLMLogits(model), source, recipe, seed=seed, description="finetune_lm")


def _adapter(model: nn.Module, lora):
    """A copy of `model` with a fresh LoRA adapter (its base weights frozen)."""
    try:
        import peft
    except ImportError:
        raise UnlearnkitError("lora needs the peft package; install with pip install 'unlearnkit[hf]'") from None
    if isinstance(lora, dict):
        allowed = {"r", "alpha", "target_modules", "dropout"}
        if unknown := sorted(set(lora) - allowed):
            raise UnlearnkitError(f"lora key '{unknown[0]}' is not one of {', '.join(sorted(allowed))}; pass a peft.LoraConfig for anything else")
        r = int(lora.get("r", 8))
        settings = peft.LoraConfig(r=r, lora_alpha=lora.get("alpha", 2 * r), target_modules=lora.get("target_modules"), lora_dropout=lora.get("dropout", 0.0),
                                   task_type="CAUSAL_LM")
    elif isinstance(lora, peft.LoraConfig):
        settings = lora
    else:
        raise UnlearnkitError(f"lora is a {type(lora).__name__}; give a peft.LoraConfig or a dict with r, alpha, target_modules, dropout")
    try:
        with warnings.catch_warnings():  # peft's notes on GPT-2's Conv1D layers and transformers' deprecations: nothing the user can act on
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return peft.get_peft_model(copy.deepcopy(model), settings)
    except ValueError as error:
        raise UnlearnkitError(f"lora: peft cannot put an adapter on this model ({str(error).splitlines()[0]}); name its layers with target_modules") from None


def unlearn_lm(
    model: nn.Module, tokenizer, *, forget, retain, method: str = "npo", config: dict | None = None, seed: int = 0, lora=None,
    merge: bool = False, template=None, precision: str = "fp32",
) -> nn.Module:
    """A copy of the causal LM `model` with the `forget` questions' answers removed by the text
    method `method` (`unlearnkit.methods.list_methods(modality="text")`; `config` sets its
    hyperparameters, whose defaults were tuned for the facts presets' small models: set `lr` for
    a pretrained LLM — TOFU unlearns at 1e-5). `model` is left untouched. `retain` is what it
    must keep answering. `template`: TOFU's question_start_tag / question_end_tag / answer_tag
    (default: "Question: ", "\\n", "Answer: "). With `lora` (a peft.LoraConfig, or a dict of r,
    alpha, target_modules, dropout) only an adapter is trained and the peft model is returned
    (`merge=True`: merged into a copy of the base)."""
    from unlearnkit.methods import Task, make_config, run_method
    from unlearnkit.models.hf import CausalLMLogits
    from unlearnkit.text.tofu import QAFormat, read_qa
    from unlearnkit.train import Recipe, Source

    settings = make_config(method, config, "text")  # an unknown method or a bad config fails before any data is read
    if precision not in ("fp32", "bf16", "auto"):
        raise UnlearnkitError(f"precision '{precision}' is not one of fp32, bf16, auto")
    if lora is not None and method == "rmu":
        raise UnlearnkitError("rmu trains chosen weights of the model itself (MLP output projections), which an adapter does not have; run rmu with lora=None")
    fmt = QAFormat.of(template)
    forget_rows, retain_rows = read_qa(forget, "forget"), read_qa(retain, "retain")
    context = _context(model)
    pieces = {
        "forget": encode(tokenizer, [r["question"] for r in forget_rows], [r["answer"] for r in forget_rows], fmt, context, "forget"),
        "retain": encode(tokenizer, [r["question"] for r in retain_rows], [r["answer"] for r in retain_rows], fmt, context, "retain"),
        "refusals": encode(tokenizer, [r["question"] for r in forget_rows], [REFUSAL] * len(forget_rows), fmt, context, "refusal"),
    }
    for encoded in pieces.values():
        _check_model(model, tokenizer, encoded)
    asked = {r["question"] + "\0" + r["answer"] for r in forget_rows}
    if overlap := [r for r in retain_rows if r["question"] + "\0" + r["answer"] in asked]:
        raise UnlearnkitError(f"retain holds {len(overlap)} forget rows (e.g. {overlap[0]['question']!r}); remove them from retain")
    width = max(e.width for e in pieces.values())  # one width: a step concatenates forget and retain rows
    device, pad = _device(model), special_ids(tokenizer)[1]
    sources = {name: Source(*(torch.from_numpy(a).to(device) for a in e.rows(width, pad))) for name, e in pieces.items()}
    working = _adapter(model, lora) if lora is not None else model  # run_method trains a copy: `model` stays as it is
    was_training = model.training
    task = Task(retain=sources["retain"], forget=sources["forget"], val=Source(sources["forget"].x[:0], sources["forget"].y[:0]),
                original=CausalLMLogits(model, context), num_classes=int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0),
                recipe=Recipe(precision=precision), seed=seed, refusals=sources["refusals"])
    try:
        result = run_method(method, CausalLMLogits(working, context), task, settings, modality="text")
    finally:
        model.train(was_training)
    from unlearnkit.health import UnlearnkitWarning

    for message in result.warnings:  # the check after every method: a collapsed or unmoved model is said
        warnings.warn(message, UnlearnkitWarning, stacklevel=2)
    unlearned = result.model.model
    if lora is not None and merge:
        return unlearned.merge_and_unload()
    return unlearned


# --- audit -----------------------------------------------------------------------------------

@torch.no_grad()
def teacher_forced(model: nn.Module, encoded: Encoded, pad: int, batch_size: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    """Per row: the log-probability of each label token, and whether greedy decoding would write
    every label (the model's top token is the label at each labelled position)."""
    from unlearnkit.models.hf import CausalLMLogits

    net = model if isinstance(model, CausalLMLogits) else CausalLMLogits(model)
    device = _device(net)
    was_training = net.training
    net.eval()
    x, y = encoded.rows(pad=pad)
    logprobs, hits = [], []
    try:
        for start in range(0, len(x), batch_size):
            xb, yb = torch.from_numpy(x[start : start + batch_size]).to(device), torch.from_numpy(y[start : start + batch_size]).to(device)
            logits = net(xb).float()
            lp, keep, whole = label_logprobs(logits, yb)
            hits.extend(whole.cpu().numpy())
            logprobs.extend(row[k] for row, k in zip(lp.cpu().numpy(), keep.cpu().numpy()))
    finally:
        net.train(was_training)
    return logprobs, np.array(hits, bool)


@torch.no_grad()
def greedy(model: nn.Module, prompts: list[list[int]], eos: int, max_new: int, batch_size: int = 64) -> list[list[int]]:
    """Greedy continuations of token prompts, up to the end token (kept) or `max_new` tokens;
    prompts of one length share a batch, so nothing is padded. The model's `generate` where it
    has one (a Hugging Face model), else one forward pass per new token."""
    from unlearnkit.models.hf import CausalLMLogits

    device = _device(model)
    was_training = model.training
    model.eval()
    out: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    try:
        for length, members in sorted(by_length.items()):
            for start in range(0, len(members), batch_size):
                chosen = members[start : start + batch_size]
                ids = torch.tensor([prompts[i] for i in chosen], device=device)
                if hasattr(model, "generate"):
                    made = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=eos)[:, length:]
                else:
                    net, made = model if isinstance(model, CausalLMLogits) else CausalLMLogits(model), ids[:, :0]
                    for _ in range(max_new):
                        step = net(torch.cat([ids, made], dim=1))[:, -1].argmax(-1, keepdim=True)
                        made = torch.cat([made, step], dim=1)
                        if ((made == eos).any(dim=1)).all():
                            break
                for i, row in zip(chosen, made.tolist()):
                    out[i] = row[: row.index(eos) + 1] if eos in row else row
    finally:
        model.train(was_training)
    return out


@dataclass
class LMAuditReport:
    """What `audit_lm` found. `to_dict()` is JSON-serializable (NaN as None).

    models: per model (unlearned, original, reference), per set (forget, retain, test): qa_exact,
    rouge_l_recall, answer_prob, loss (mean answer-token NLL), and where the rows carry
    paraphrased and perturbed answers truth_ratio (the mean R) and truth_ratio_score (forget:
    mean min(R, 1/R); retain: mean max(0, 1 − R)); model_utility. forget_quality: per model but
    the reference, TOFU's forget quality (the KS test's p-value against the reference) and the
    KS statistic. attacks: per model, loss / min-k / zlib of forget vs test rows (AUC, TPR at low
    FPR, 95% intervals). positive_control: whether each attack finds the forget rows on the
    original above the reference. gaps: per model, each figure minus the reference's."""

    sizes: dict[str, int]
    models: dict[str, dict] = field(default_factory=dict)
    forget_quality: dict[str, dict] = field(default_factory=dict)
    attacks: dict[str, dict] = field(default_factory=dict)
    positive_control: dict[str, Any] = field(default_factory=dict)
    gaps: dict[str, dict] = field(default_factory=dict)
    ensemble: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from unlearnkit.fileio import jsonable

        return jsonable({"sizes": self.sizes, "models": self.models, "forget_quality": self.forget_quality, "attacks": self.attacks,
                          "positive_control": self.positive_control, "gaps": self.gaps, "ensemble": self.ensemble, "skipped": self.skipped})


@dataclass
class _Set:
    rows: list[dict]
    answers: Encoded
    paraphrased: Encoded | None = None
    perturbed: Encoded | None = None
    perturbed_of: list[int] = field(default_factory=list)  # the question of each perturbed row


def _prepared(tokenizer, rows: list[dict], fmt, context, name: str) -> _Set:
    from unlearnkit.text.tofu import has_perturbations

    questions = [r["question"] for r in rows]
    found = _Set(rows, encode(tokenizer, questions, [r["answer"] for r in rows], fmt, context, name))
    if has_perturbations(rows):
        found.paraphrased = encode(tokenizer, questions, [r["paraphrased_answer"] for r in rows], fmt, context, f"{name} paraphrased")
        found.perturbed_of = [i for i, r in enumerate(rows) for _ in r["perturbed_answer"]]
        found.perturbed = encode(tokenizer, [questions[i] for i in found.perturbed_of], [p for r in rows for p in r["perturbed_answer"]], fmt, context, f"{name} perturbed")
    return found


def _figures(model, tokenizer, data: _Set, role: str, pad: int, eos: int) -> tuple[dict, dict]:
    """(the set's figures, what the attacks and forget quality read: answer-token log-probabilities
    and the KS statistic)."""
    from unlearnkit.text.tofu import ks_statistic, rouge_l_recall, truth_ratio

    logprobs, hits = teacher_forced(model, data.answers, pad)
    nll = np.array([-lp.mean() for lp in logprobs])
    prompts = [ids[:p] for ids, p in zip(data.answers.ids, data.answers.prompt)]
    longest = max(len(ids) - p for ids, p in zip(data.answers.ids, data.answers.prompt))
    generated = greedy(model, prompts, eos, longest + 8)
    texts = [tokenizer.decode(g, skip_special_tokens=True) for g in generated]
    figures = {
        "qa_exact": float(hits.mean()), "rouge_l_recall": float(np.mean([rouge_l_recall(t, r["answer"]) for t, r in zip(texts, data.rows)])),
        "answer_prob": float(np.exp(-nll).mean()), "loss": float(nll.mean()),
    }
    kept = {"logprob": logprobs, "ks": None}
    if data.paraphrased is not None:
        para = np.array([-lp.mean() for lp in teacher_forced(model, data.paraphrased, pad)[0]])
        pert_flat = np.array([-lp.mean() for lp in teacher_forced(model, data.perturbed, pad)[0]])
        of = np.array(data.perturbed_of)
        pert = [pert_flat[of == i] for i in range(len(data.rows))]
        ratio = truth_ratio(para, pert)
        figures["truth_ratio"] = float(ratio.mean())
        figures["truth_ratio_score"] = float(np.minimum(ratio, 1 / ratio).mean() if role == "forget" else np.maximum(0, 1 - ratio).mean())
        kept["ks"] = ks_statistic(para, pert)
    return figures, kept


def _models(given, name: str) -> list[nn.Module]:
    found = list(given) if isinstance(given, (list, tuple)) else [given]
    if not found or not all(isinstance(m, nn.Module) for m in found):
        kinds = ", ".join(sorted({type(m).__name__ for m in found})) or "an empty list"
        raise UnlearnkitError(f"{name} is {kinds}; give a torch causal language model, or a list of them (one per seed)")
    return found


def confidences(logprobs: list[np.ndarray]) -> np.ndarray:
    """Per row, log p − log(1 − p) with p the geometric mean of its answer tokens' probabilities."""
    log_p = np.minimum(np.array([lp.mean() for lp in logprobs]), -1e-7)
    return log_p - np.log(-np.expm1(log_p))


def _ensemble(runs, references, report, kept, prepared, pad: int) -> dict:
    """ε score and KLoM of the unlearned runs against the retrained models on the forget rows."""
    from unlearnkit.evaluate.epsilon import neurips_score
    from unlearnkit.evaluate.klom import klom_both

    def measured(extra: list[nn.Module], first: str) -> tuple[np.ndarray, np.ndarray]:
        conf = [confidences(kept[first]["forget"]["logprob"])]
        utility = [(report.models[first]["retain"]["qa_exact"], report.models[first]["retain"]["answer_prob"])]
        for m in extra:
            logprobs, _ = teacher_forced(m, prepared["forget"].answers, pad)
            retain_lp, retain_hits = teacher_forced(m, prepared["retain"].answers, pad)
            conf.append(confidences(logprobs))
            utility.append((float(retain_hits.mean()), float(np.mean([np.exp(lp.mean()) for lp in retain_lp]))))
        return np.stack(conf), np.mean(utility, axis=0)

    unlearned_conf, unlearned_utility = measured(runs[1:], "unlearned")
    retrained_conf, retrained_utility = measured(references[1:], "reference")
    score = neurips_score(unlearned_conf, retrained_conf, retain_acc=(unlearned_utility[0], retrained_utility[0]),
                          test_acc=(unlearned_utility[1], retrained_utility[1]))
    return {"neurips_score": score["score"], "forgetting_quality": score["forgetting_quality"], "models_per_side": score["models_per_side"],
            **{key: summary for key, summary in klom_both(unlearned_conf, retrained_conf).items()}}


def audit_lm(
    model, tokenizer, *, forget, retain, test=None, original: nn.Module | None = None, reference=None,
    seed: int = 0, template=None, resamples: int = 1000,
) -> LMAuditReport:
    """Evidence of how far the causal LM `model` has forgotten the `forget` questions, TOFU's way
    and by membership attacks (see `LMAuditReport`). Truth ratios, forget quality and model
    utility need rows with `paraphrased_answer` and `perturbed_answer` (TOFU's *_perturbed
    files); the attacks need `test` (questions the models never trained on); forget quality needs
    `reference` (a model trained without the forget rows); the positive control needs `original`.
    `model` and `reference` may each be a list of models, the same procedure run with different
    seeds (the first of each gives the single-model figures): with at least 2 on each side the
    report adds the NeurIPS 2023 ε score and KLoM per forget row (`ensemble`). What cannot be
    computed is said in `skipped`, with why."""
    from unlearnkit.evaluate.stats import has_signal, score_attack
    from unlearnkit.text.evaluate import ATTACKS, membership_scores
    from unlearnkit.text.tofu import QAFormat, forget_quality, model_utility, read_qa

    fmt = QAFormat.of(template)
    eos, pad = special_ids(tokenizer)
    context = _context(model)
    sets = {"forget": read_qa(forget, "forget"), "retain": read_qa(retain, "retain")} | ({"test": read_qa(test, "test")} if test is not None else {})
    prepared = {name: _prepared(tokenizer, rows, fmt, context, name) for name, rows in sets.items()}
    runs, references = _models(model, "model"), _models(reference, "reference") if reference is not None else []
    model, reference = runs[0], references[0] if references else None
    models = {name: m for name, m in (("unlearned", model), ("original", original), ("reference", reference)) if m is not None}
    for m in models.values():
        for data in prepared.values():
            _check_model(m, tokenizer, data.answers)
    report = LMAuditReport(sizes={name: len(rows) for name, rows in sets.items()})
    kept: dict[str, dict[str, dict]] = {}
    for name, m in models.items():
        report.models[name], kept[name] = {}, {}
        for role, data in prepared.items():
            report.models[name][role], kept[name][role] = _figures(m, tokenizer, data, role, pad, eos)
        retain_figures = report.models[name]["retain"]
        if "truth_ratio_score" in retain_figures:
            report.models[name]["model_utility"] = model_utility(retain_figures["answer_prob"], retain_figures["rouge_l_recall"], retain_figures["truth_ratio_score"])
    if prepared["retain"].paraphrased is None:
        report.skipped.append("model utility and retain truth ratio: the retain rows carry no paraphrased_answer / perturbed_answer (use TOFU's retain_perturbed file)")
    if prepared["forget"].paraphrased is None:
        report.skipped.append("forget truth ratio and forget quality: the forget rows carry no paraphrased_answer / perturbed_answer (use TOFU's forgetXX_perturbed file)")
    elif reference is None:
        report.skipped.append("forget quality: it needs `reference`, a model trained without the forget rows (TOFU's retain model)")
    else:
        for name in models:
            if name != "reference":
                report.forget_quality[name] = forget_quality(kept[name]["forget"]["ks"], kept["reference"]["forget"]["ks"])

    if test is None:
        report.skipped.append("membership attacks: they need `test`, questions the models never trained on (the non-members)")
    else:
        rows = sets["forget"] + sets["test"]
        compressed = np.array([len(zlib.compress((fmt.answer_tag + r["answer"]).encode())) for r in rows])
        subjects = [r.get("subject") for r in rows]
        groups = np.unique([str(s) for s in subjects], return_inverse=True)[1] if all(isinstance(s, str) for s in subjects) else None
        if groups is None:
            report.skipped.append("people-level intervals: the rows carry no 'subject', so the attacks' intervals resample rows")
        n_forget, scores = len(sets["forget"]), {}
        for name in models:
            lp = kept[name]["forget"]["logprob"] + kept[name]["test"]["logprob"]
            padded = np.full((len(lp), max(len(v) for v in lp)), np.nan)
            for i, v in enumerate(lp):
                padded[i, : len(v)] = v
            found = membership_scores(padded, compressed)
            scores[name] = {a: score_attack(found[a][:n_forget], found[a][n_forget:], resamples=resamples, seed=seed, groups=groups) for a in ATTACKS}
            report.attacks[name] = {a: s.to_json() for a, s in scores[name].items()}
        if "original" in scores:
            baseline = scores.get("reference")
            report.positive_control = {"against": "reference" if baseline else "chance",
                                       "signal": {a: has_signal(scores["original"][a], baseline[a] if baseline else None) for a in ATTACKS}}
        else:
            report.skipped.append("positive control: it needs `original`, the model before unlearning")
    if len(runs) >= 2 and len(references) >= 2:
        report.ensemble = _ensemble(runs, references, report, kept, prepared, pad)
    else:
        report.skipped.append(f"ε score and KLoM: they need at least 2 unlearned and 2 retrained models (model=[…], reference=[…], one per seed); got {len(runs)} and {len(references)}")
    if "reference" in models:
        ref = report.models["reference"]
        for name in models:
            if name == "reference":
                continue
            row = report.models[name]
            gaps = {f"{role}.{k}": row[role][k] - ref[role][k] for role in prepared for k in row[role] if k in ref[role]}
            if "model_utility" in row:
                gaps["model_utility"] = row["model_utility"] - ref["model_utility"]
            for attack in report.attacks.get(name, {}):
                gaps[f"{attack}_auc"] = report.attacks[name][attack]["auc"]["value"] - report.attacks["reference"][attack]["auc"]["value"]
            report.gaps[name] = gaps
    else:
        report.skipped.append("gaps to retraining: they need `reference`, a model trained without the forget rows")
    return report
