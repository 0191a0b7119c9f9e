"""Unlearning people from a Hugging Face causal language model, TOFU's way, on a CPU in a minute or
two, nothing downloaded: the facts corpus (fictitious people and their personal data) written
as TOFU-format files, a byte-level BPE tokenizer trained on them, a random-init GPT-2 (2 blocks,
width 64) fine-tuned on every trained person (the original) and on all but the forgotten two
(the reference, TOFU's retain model), NPO run through `unlearn_lm` on the whole model and on a
LoRA adapter, and `audit_lm` on each: QA exact match, ROUGE-L recall, answer probability, truth
ratio, TOFU's forget quality and model utility, the loss attack's AUC.

    pip install 'unlearnkit[hf]'
    python examples/hf_lm.py [OUT_DIR]

A user with TOFU on disk passes its files instead (forget10.json, retain90.json,
forget10_perturbed.json, retain_perturbed.json) and their own model and tokenizer, unchanged.
The LoRA row's adapter holds everything that run changed: `adapter.unload()` gives back the
original bitwise, and an adapter trained on data is deleted exactly the same way.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

import unlearnkit
from unlearnkit.text.facts import FactsSpec, generate
from unlearnkit.text.hf import finetune_lm
from unlearnkit.text.tofu import read_qa, write_tofu

EOS = "<|endoftext|>"


def bpe_tokenizer(files: dict[str, Path]) -> PreTrainedTokenizerFast:
    """A byte-level BPE of 600 tokens trained on the questions and answers (GPT-2's scheme)."""
    rows = read_qa(files["full"], "full") + read_qa(files["heldout"], "heldout")
    texts = [r["question"] for r in rows] + [r["answer"] for r in rows] + [p for r in rows if "perturbed_answer" in r for p in [r["paraphrased_answer"], *r["perturbed_answer"]]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS)  # no pad token: TOFU pads with the end token


def gpt2(tokenizer, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=64, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id))


def main(out: Path) -> None:
    started = time.perf_counter()
    torch.manual_seed(0)
    files = write_tofu(generate(FactsSpec(people=24, heldout=0.25, paraphrases=1)), out, forget=(10,))
    print(f"TOFU-format files under {out}: {', '.join(p.name for p in files.values())}")
    tokenizer = bpe_tokenizer(files)
    original, reference = gpt2(tokenizer), gpt2(tokenizer)
    finetune_lm(original, tokenizer, files["full"], epochs=40, lr=3e-3, batch_size=16)  # every trained person
    finetune_lm(reference, tokenizer, files["retain90"], epochs=40, lr=3e-3, batch_size=16)  # all but the forgotten two
    unlearned = {
        "npo": unlearnkit.unlearn_lm(original, tokenizer, forget=files["forget10"], retain=files["retain90"], method="npo",
                                     config={"epochs": 5, "lr": 1e-3, "retain_weight": 10}),
        "npo + LoRA r=8": unlearnkit.unlearn_lm(original, tokenizer, forget=files["forget10"], retain=files["retain90"], method="npo",
                                                config={"epochs": 10, "lr": 1e-2, "retain_weight": 10}, lora={"r": 8}),
    }
    audit = lambda model, **kw: unlearnkit.audit_lm(model, tokenizer, forget=files["forget10_perturbed"], retain=files["retain_perturbed"],  # noqa: E731
                                                    test=files["heldout"], reference=reference, **kw).to_dict()
    reports = {"original": audit(original, original=original)} | {name: audit(model) for name, model in unlearned.items()}
    table = Table(title=f"TOFU figures: {len(read_qa(files['forget10'], 'f'))} forget questions, GPT-2 from random init, fp32")
    for column in ("model", "forget QA", "forget ROUGE-L", "forget prob", "forget truth ratio", "forget quality", "retain QA", "model utility", "loss attack AUC"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = [(name, report["models"]["unlearned"], report["forget_quality"].get("unlearned", {}), report["attacks"]["unlearned"]) for name, report in reports.items()]
    rows.insert(1, ("reference (retain only)", reports["original"]["models"]["reference"], {"forget_quality": 1.0}, reports["original"]["attacks"]["reference"]))
    for name, m, quality, attacks in rows:
        table.add_row(name, f"{m['forget']['qa_exact']:.2f}", f"{m['forget']['rouge_l_recall']:.2f}", f"{m['forget']['answer_prob']:.2f}",
                      f"{m['forget']['truth_ratio']:.2f}", f"{quality['forget_quality']:.3g}", f"{m['retain']['qa_exact']:.2f}", f"{m['model_utility']:.2f}",
                      f"{attacks['loss']['auc']['value']:.2f}")
    Console(width=160).print(table)
    print("the reference's forget quality is 1 by definition (its truth ratios against themselves); higher forget quality is closer to it")
    print(f"positive control (loss, min-k, zlib find the forget rows on the original above the reference): {reports['original']['positive_control']['signal']}")
    print(f"done in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="unlearnkit-hf-lm-")))
