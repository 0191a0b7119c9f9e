"""A Hugging Face text classifier through unlearnkit's API, as a user who brings one would run it.

A random-init BERT (2 layers, width 32) learns the sentiment of short reviews, tokenized by a
word-level tokenizer trained here (no download). 20 reviews were mislabelled by one annotator
and each names its author: the model can get them "right" only by memorizing them, so a model
trained without them gets them wrong. Those 20 authors ask for deletion: `unlearnkit.unlearn`
takes the tokenizer's own `BatchEncoding` (labels under "labels", as `transformers` expects),
and `unlearnkit.audit` compares each result with the model retrained without them.

What it shows (measured on a 2-core AMD EPYC): trained to zero loss, as a short AdamW run leaves
a small transformer, the BERT is saturated: at their defaults (tuned for our ResNet-18 under
SGD) finetune, kl, neggrad-plus and ssd leave every forget prediction as it was; the check after
each method says so for neggrad-plus and ssd ("barely changed the model"), and the audit's gap
to the retrained model says it for all four.

    .venv/bin/python examples/hf_classifier.py          # about 15 seconds on a 2-core CPU
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

import unlearnkit

GOOD, BAD = ("good", "great", "lovely", "superb", "tasty", "friendly"), ("bad", "awful", "bland", "rude", "cold", "slow")
PLACES = tuple(f"place{i}" for i in range(40))
MISLABELLED, TRAIN, TEST, LENGTH = 20, 260, 120, 12


def reviews(seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Reviews whose label is the sentiment of their adjectives; the first MISLABELLED carry their
    author's name and the opposite label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, MISLABELLED + TRAIN + TEST)
    texts = []
    for i, label in enumerate(labels):
        words = ["the", *rng.choice(PLACES, 2), "was", *rng.choice(GOOD if label else BAD, 2)] + ([f"by author{i}"] if i < MISLABELLED else [])
        texts.append(" ".join(words))
    labels[:MISLABELLED] = 1 - labels[:MISLABELLED]
    return texts, labels


def word_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]")


def trained_bert(vocab: int, batch: dict, epochs: int = 60) -> BertForSequenceClassification:
    """What the user already has: a BERT trained by a plain loop on `batch` (labels inside)."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                                     max_position_embeddings=LENGTH, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    n = len(batch["labels"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    decay = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=epochs * -(-n // 32))  # the Trainer's default schedule
    for _ in range(epochs):
        for index in torch.randperm(n).split(32):
            loss = model(**{k: v[index] for k, v in batch.items()}).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            decay.step()
    return model.eval()


def main() -> None:
    started = time.perf_counter()
    texts, labels = reviews()
    tokenizer = word_tokenizer(texts)
    encoding = tokenizer(texts, padding="max_length", max_length=LENGTH, truncation=True, return_tensors="pt")
    rows = lambda a, b: {**{k: v[a:b] for k, v in encoding.items()}, "labels": torch.from_numpy(labels[a:b])}  # noqa: E731
    forget, retain, test = rows(0, MISLABELLED), rows(MISLABELLED, MISLABELLED + TRAIN), rows(MISLABELLED + TRAIN, len(texts))
    everything = {k: torch.cat([forget[k], retain[k]]) for k in forget}
    original, retrained = trained_bert(tokenizer.vocab_size, everything), trained_bert(tokenizer.vocab_size, retain)
    print(f"trained the original and the retrained BERT in {time.perf_counter() - started:.0f}s")

    results = {"original": original}
    for method in ("finetune", "kl", "neggrad-plus", "ssd"):
        with warnings.catch_warnings(record=True) as said:  # the check after every method: a collapsed or unmoved model is said
            warnings.simplefilter("always", unlearnkit.UnlearnkitWarning)
            results[method] = unlearnkit.unlearn(original, forget=forget, retain=retain, val=test, method=method, seed=0)
        for warning in said:
            print(f"  warning: {warning.message}")

    print(f"{'model':<14}{'forget acc':>12}{'retain acc':>12}{'test acc':>10}{'forget gap to retrained':>26}")
    for name, model in results.items():
        report = unlearnkit.audit(model, forget=forget, test=test, retain=retain, reference=retrained).to_dict()
        row = report["models"]["unlearned"]
        print(f"{name:<14}{row['forget_acc']:>12.2f}{row['retain_acc']:>12.2f}{row['test_acc']:>10.2f}{report['gaps']['unlearned']['forget_acc']:>+26.2f}")
    reference = report["models"]["reference"]
    print(f"{'retrained':<14}{reference['forget_acc']:>12.2f}{reference['retain_acc']:>12.2f}{reference['test_acc']:>10.2f}{0:>+26.2f}")
    print(f"forget acc: agreement with the {MISLABELLED} wrong labels; a gap of 0 is forgetting as retraining does. "
          f"done in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
