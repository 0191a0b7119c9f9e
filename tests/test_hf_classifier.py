"""A Hugging Face `transformers` sequence classifier, unlearned and audited through the public API
on the tokenizer's own output (a `BatchEncoding`: token ids, token types, attention mask), with
a planted effect: 24 training sentences carry flipped labels and one word of their own, so the
original can only get them right by memorizing them and a model retrained without them gets
them wrong. Random-init BERT from a small config and a word-level tokenizer trained here: no
download."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import unlearnkit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.interface import Classifier
from unlearnkit.train import Recipe, Source, fit

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

POSITIVE = ("good", "great", "fine", "lovely", "superb", "bright")
NEGATIVE = ("bad", "awful", "poor", "grim", "dull", "sad")
FILLER = tuple(f"w{i}" for i in range(60))
FORGET, RETAIN, TEST = 24, 240, 120
LENGTH = 12


def corpus(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sentences whose label is their sentiment words' (positive 1, negative 0); the first
    FORGET sentences get a word of their own and the opposite label."""
    rng = np.random.default_rng(seed)
    n = FORGET + RETAIN + TEST
    labels = rng.integers(0, 2, n)
    texts = []
    for i, label in enumerate(labels):
        words = [*rng.choice(FILLER, 5), *rng.choice(POSITIVE if label else NEGATIVE, 2)] + ([f"name{i}"] if i < FORGET else [])
        rng.shuffle(words)
        texts.append(" ".join(words))
    true_labels = labels.copy()
    labels[:FORGET] = 1 - labels[:FORGET]
    return texts, labels.astype(np.int64), true_labels


def tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]")


def bert(vocab: int, seed: int, **config):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                                    max_position_embeddings=LENGTH, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **config))


def rows(encoding, labels: np.ndarray, index: np.ndarray) -> dict:
    """The rows `index` of a BatchEncoding, labels under "labels" (Hugging Face's convention)."""
    return {**{k: v[index] for k, v in encoding.items()}, "labels": torch.from_numpy(labels[index])}


def trained(model, encoding, labels: np.ndarray, index: np.ndarray):
    names = tuple(encoding.keys())
    packed = torch.stack([encoding[k][index] for k in names], dim=1)
    fit(Classifier(model, names), Source(packed, torch.from_numpy(labels[index])), Recipe(epochs=60, batch_size=32, lr=3e-3, optimizer="adamw", schedule="onecycle", precision="fp32"), seed=0)
    return model.eval()


@pytest.fixture(scope="module")
def setup():
    texts, labels, _ = corpus()
    tok = tokenizer(texts)
    encoding = tok(texts, padding="max_length", max_length=LENGTH, truncation=True, return_tensors="pt")
    forget, retain, test = np.arange(FORGET), np.arange(FORGET, FORGET + RETAIN), np.arange(FORGET + RETAIN, len(texts))
    original = trained(bert(tok.vocab_size, 0), encoding, labels, np.concatenate([forget, retain]))
    retrained = trained(bert(tok.vocab_size, 0), encoding, labels, retain)
    sets = {name: rows(encoding, labels, index) for name, index in (("forget", forget), ("retain", retain), ("test", test))}
    return tok, original, retrained, sets


@pytest.mark.slow
def test_the_audit_tells_the_memorizing_original_from_the_retrained_bert(setup):
    _, original, retrained, sets = setup
    report = unlearnkit.audit(retrained, forget=sets["forget"], test=sets["test"], retain=sets["retain"], original=original).to_dict()
    models = report["models"]
    assert models["original"]["forget_acc"] >= 0.9, models  # memorized the flipped labels
    assert models["unlearned"]["forget_acc"] <= 0.35, models  # the retrained model follows the sentiment words
    assert models["unlearned"]["test_acc"] >= 0.85 and models["original"]["test_acc"] >= 0.85, models
    assert report["attacks"]["original"].keys() == report["attacks"]["unlearned"].keys() == {"lr-loss", "loss-threshold", "svc-entropy"}


@pytest.mark.slow
def test_a_bert_is_unlearned_through_the_api_and_stays_a_bert(setup):
    _, original, retrained, sets = setup
    before = {k: v.clone() for k, v in original.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unlearned = unlearnkit.unlearn(original, forget=sets["forget"], retain=sets["retain"], val=sets["test"], method="kl", config={"lr": 0.03, "epochs": 2})
    assert type(unlearned) is type(original)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items()), "the input model was changed"
    report = unlearnkit.audit(unlearned, forget=sets["forget"], test=sets["test"], retain=sets["retain"], original=original, reference=retrained).to_dict()
    row = report["models"]["unlearned"]
    # toward the retrained model on the forget set (the original stands 1.0 above it), keeping the retain set
    assert report["gaps"]["unlearned"]["forget_acc"] <= report["gaps"]["original"]["forget_acc"] - 0.1, report["models"]
    assert row["retain_acc"] >= 0.9, row


@pytest.mark.slow
def test_a_tuple_output_and_a_dataset_of_dicts_are_read_like_a_model_output(setup):
    tok, original, _, sets = setup
    plain = bert(tok.vocab_size, 0)
    plain.load_state_dict(original.state_dict())
    plain.config.return_dict = False  # forward returns (logits,)
    dataset = [{k: v[i] for k, v in sets["forget"].items()} for i in range(FORGET)]
    from_dicts = unlearnkit.audit(plain, forget=dataset, test=sets["test"]).to_dict()["models"]["unlearned"]
    from_output = unlearnkit.audit(original, forget=sets["forget"], test=sets["test"]).to_dict()["models"]["unlearned"]
    assert from_dicts["forget_acc"] == from_output["forget_acc"] and from_dicts["test_acc"] == from_output["test_acc"]


def test_dict_inputs_of_different_lengths_are_refused_in_one_line():
    texts, labels, _ = corpus()
    tok = tokenizer(texts)
    short = tok(texts[:8], padding="max_length", max_length=LENGTH, return_tensors="pt")
    long = tok(texts[8:40], padding="max_length", max_length=LENGTH + 2, return_tensors="pt")
    model = bert(tok.vocab_size, 0)
    with pytest.raises(UnlearnkitError, match=r"^the sets hold inputs of different shapes \(forget \(2, 12\), retain \(2, 14\)\)"):
        unlearnkit.unlearn(model, forget=(short, labels[:8]), retain=(long, labels[8:40]), method="finetune")


@pytest.mark.slow
def test_a_method_whose_default_rate_wrecks_the_bert_runs_again_at_a_tenth(setup):
    _, original, _, sets = setup
    data = {"forget": sets["forget"], "retain": sets["retain"], "val": sets["test"]}
    with pytest.warns(unlearnkit.UnlearnkitWarning) as without:
        wrecked = unlearnkit.unlearn(original, **data, method="salun", lr_backoff=0)
    assert any("salun collapsed the model: retain accuracy" in str(w.message) for w in without)
    with pytest.warns(unlearnkit.UnlearnkitWarning) as caught:
        kept = unlearnkit.unlearn(original, **data, method="salun")
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("salun collapsed the model at lr 0.3; it kept the model at lr 0.03") for m in messages), messages
    accuracy = lambda model: unlearnkit.audit(model, forget=sets["forget"], test=sets["retain"]).to_dict()["models"]["unlearned"]["test_acc"]  # noqa: E731
    assert accuracy(wrecked) <= 0.7 and accuracy(kept) >= 0.9
