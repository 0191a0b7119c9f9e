"""Hugging Face causal LMs through the text methods (`unlearn_lm`, `audit_lm`) on TOFU-format facts:
a random-init GPT-2 (2 blocks, width 64) and a byte-level BPE tokenizer trained here on the facts
text, fp32, no download. Planted effects: an original fine-tuned on every trained person answers
the forgotten people's questions, a reference fine-tuned without them does not; the audit tells
them apart, and unlearning moves the original toward the reference."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import unlearnkit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.text.facts import FactsSpec, generate
from unlearnkit.text.tofu import forget_quality, ks_statistic, read_qa, rouge_l_recall, truth_ratio, write_tofu

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("peft")

EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def tofu(tmp_path_factory):
    """The facts corpus of 24 people (18 trained, 2 of them forgotten; 6 held out) as TOFU files."""
    return write_tofu(generate(FactsSpec(people=24, heldout=0.25, paraphrases=1, filler=2)), tmp_path_factory.mktemp("tofu"), forget=(10,))


def train_tokenizer(paths, pad: bool = False, eos: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rows = read_qa(paths["full"], "full") + read_qa(paths["heldout"], "heldout")
    texts = [r["question"] for r in rows] + [r["answer"] for r in rows] + [p for r in read_qa(paths["heldout"], "heldout") for p in [r["paraphrased_answer"], *r["perturbed_answer"]]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=[EOS, "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, **({"eos_token": EOS} if eos else {}), **({"pad_token": "<pad>"} if pad else {}))


@pytest.fixture(scope="module")
def tokenizer(tofu):
    return train_tokenizer(tofu)


def gpt2(tokenizer, seed: int = 0, width: int = 64):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=width, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return GPT2LMHeadModel(config)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- fast ------------------------------------------------------------------------------------

def test_the_core_imports_without_transformers_and_a_missing_extra_is_one_line(monkeypatch):
    code = "import sys, unlearnkit; unlearnkit.unlearn_lm; assert 'transformers' not in sys.modules and 'peft' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an install without the extra looks like
    with pytest.raises(UnlearnkitError, match=r"^Hugging Face models need the transformers package; install with pip install 'unlearnkit\[hf\]'$"):
        unlearnkit.create_model("hf-gpt2")


def test_rows_are_tokenized_as_tofu_does(tofu, tokenizer):
    from unlearnkit.text.hf import encode, special_ids
    from unlearnkit.text.tofu import QAFormat

    row = read_qa(tofu["forget10"], "forget")[0]
    encoded = encode(tokenizer, [row["question"]], [row["answer"]], QAFormat())
    ids, asked = encoded.ids[0], encoded.prompt[0]
    assert ids[:asked] == tokenizer(f"Question: {row['question']}\n")["input_ids"] and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[asked:-1]) == "Answer: " + row["answer"]
    x, y = encoded.rows(width=len(ids) + 3, pad=special_ids(tokenizer)[1])
    # next-token targets: y[t] = ids[t + 1] on the answer tokens and the end token, -100 on the question and the padding
    labelled = np.flatnonzero(y[0] != -100)
    assert labelled.tolist() == list(range(asked - 1, len(ids) - 1)) and y[0, labelled].tolist() == ids[asked:]
    assert x[0, : len(ids) - 1].tolist() == ids[:-1] and (x[0, len(ids) - 1 :] == tokenizer.eos_token_id).all()  # no pad token: TOFU pads with the end token
    assert special_ids(train_tokenizer(tofu, pad=True))[1] == 1  # a pad token is used where there is one
    with pytest.raises(UnlearnkitError, match="has no eos_token; set one"):
        special_ids(train_tokenizer(tofu, eos=False))


def test_the_wrapper_gives_the_methods_the_hf_models_losses(tofu, tokenizer):
    """The text methods' losses (token_nll, sequence_logprob) on the wrapper's logits of the shifted
    rows equal the Hugging Face model's own loss and per-row log-likelihood, computed with the
    attention mask over the unshifted, padded rows: right padding needs no mask."""
    from unlearnkit.models.hf import CausalLMLogits
    from unlearnkit.text.hf import qa_source
    from unlearnkit.text.methods.common import sequence_logprob, token_nll

    model = gpt2(tokenizer).eval()
    rows = read_qa(tofu["forget10"], "forget")[:6]
    source = qa_source(model, tokenizer, rows)
    ids = torch.cat([source.x, source.x[:, -1:]], dim=1)
    ids[torch.arange(len(ids)), (source.y != -100).cumsum(1).argmax(1) + 1] = tokenizer.eos_token_id
    labels = torch.cat([torch.full_like(source.y[:, :1], -100), source.y], dim=1)
    lengths = (labels != -100).cumsum(1).argmax(1) + 1
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():
        hf = model(input_ids=ids, attention_mask=mask, labels=labels)
        ours = CausalLMLogits(model)(source.x)
        assert torch.allclose(token_nll(ours, source.y), hf.loss, atol=1e-5)
        explicit = torch.log_softmax(hf.logits[:, :-1].float(), -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
        expected = (explicit * (labels[:, 1:] != -100)).sum(1)
        assert torch.allclose(sequence_logprob(ours, source.y)[0], expected, atol=1e-4)


def test_bad_input_is_one_line(tofu, tokenizer):
    model = gpt2(tokenizer, width=32)
    forget, retain = read_qa(tofu["forget10"], "f"), read_qa(tofu["retain90"], "r")
    cases = [
        ({"forget": [{"question": "Who?"}]}, "forget row 0 has no 'answer' string"),
        ({"method": "erase-repair"}, "unknown text method 'erase-repair'; choose from"),
        ({"lora": {"rank": 4}}, "lora key 'rank' is not one of"),
        ({"method": "rmu", "lora": {"r": 4}}, "run rmu with lora=None"),
        ({"retain": retain + forget[:1]}, "retain holds 1 forget rows"),
        ({"forget": str(tofu["full"]) + ".missing"}, "does not exist; give a JSON-lines file in TOFU's format"),
        ({"config": {"lr": -1}}, "config field 'lr'"),
        ({"template": {"question_tag": "Q"}}, "is not a dict of question_start_tag"),
    ]
    for change, message in cases:
        with pytest.raises(UnlearnkitError, match=message) as caught:
            unlearnkit.unlearn_lm(model, tokenizer, **({"forget": forget, "retain": retain} | change))
        assert "\n" not in str(caught.value)
    with pytest.raises(UnlearnkitError, match="has no eos_token"):
        unlearnkit.unlearn_lm(model, train_tokenizer(tofu, eos=False), forget=forget, retain=retain)


def test_tofu_files_both_ways(tofu):
    corpus = generate(FactsSpec(people=24, heldout=0.25, paraphrases=1, filler=2))
    assert sorted(tofu) == ["forget10", "forget10_perturbed", "full", "heldout", "retain90", "retain_perturbed"]
    full, forget, retain = (read_qa(tofu[k], k) for k in ("full", "forget10", "retain90"))
    perturbed, heldout = read_qa(tofu["forget10_perturbed"], "p"), read_qa(tofu["heldout"], "h")
    trained = [p for p in range(24) if p not in corpus.heldout]
    assert len(full) == 10 * len(trained) and len(forget) == 20 and forget + retain != full and sorted(map(json.dumps, forget + retain)) == sorted(map(json.dumps, full))
    assert all(set(r) == {"question", "answer"} for r in full)  # the plain files hold TOFU's two fields
    assert [r["question"] for r in perturbed] == [r["question"] for r in forget]
    forgotten = {corpus.names[p] for p in trained[-2:]}  # TOFU forgets the last people
    assert {r["subject"] for r in perturbed} == forgotten
    names_held_out = {corpus.names[p] for p in corpus.heldout}
    assert not any(n in r["question"] for r in full for n in names_held_out) and {r["subject"] for r in heldout} == names_held_out
    for row in perturbed + heldout:
        assert len(row["perturbed_answer"]) == 5 and len(set(row["perturbed_answer"])) == 5 and row["paraphrased_answer"] not in row["perturbed_answer"]
        assert row["paraphrased_answer"] != row["answer"] and row["subject"] in row["answer"]
    with pytest.raises(UnlearnkitError, match="leaves none retained"):
        write_tofu(corpus, tofu["full"].parent / "bad", forget=(100,))


def test_the_cli_writes_a_facts_preset_as_tofu_files(tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    done = CliRunner().invoke(app, ["facts", "--tofu", str(tmp_path), "--preset", "facts-smoke", "--forget", "10,20"])
    assert done.exit_code == 0, done.output
    assert {p.name for p in tmp_path.iterdir()} == {"full.json", "heldout.json", "forget10.json", "retain90.json", "forget10_perturbed.json",
                                                    "forget20.json", "retain80.json", "forget20_perturbed.json", "retain_perturbed.json"}
    assert len(read_qa(tmp_path / "forget20.json", "f")) == 20 and len(read_qa(tmp_path / "full.json", "full")) == 90  # 2 and 9 people
    with pytest.raises(UnlearnkitError, match="has no facts corpus"):
        CliRunner().invoke(app, ["facts", "--tofu", str(tmp_path), "--preset", "smoke"], catch_exceptions=False)


def test_tofu_figures_follow_its_code():
    rng = np.random.default_rng(0)
    para, pert = rng.uniform(0.1, 3, 30), rng.uniform(0.1, 3, (30, 5))
    # utils.py lines 124-127 and 146-155, as written there
    assert np.allclose(truth_ratio(para, list(pert)), np.exp(-pert).mean(-1) / np.exp(-para))
    assert np.allclose(ks_statistic(para, list(pert)), np.exp(pert.mean(-1) - para))
    assert forget_quality(ks_statistic(para, list(pert)), ks_statistic(para, list(pert)))["forget_quality"] == pytest.approx(1.0)
    assert forget_quality(np.linspace(0, 1, 30), np.linspace(5, 6, 30))["forget_quality"] < 1e-6
    assert rouge_l_recall("Answer: Ann was born in May", "Ann was born on 3 May.") == pytest.approx(4 / 6)
    assert rouge_l_recall("", "x") == 0.0 and rouge_l_recall("x y", "X, y!") == 1.0


def test_a_saved_hf_gpt2_loads_back(tmp_path):
    model = unlearnkit.create_model("hf-gpt2", context=16, width=32)
    ids = torch.randint(1, 256, (2, 16))
    path = unlearnkit.save_model(model, tmp_path / "m.safetensors")
    loaded = unlearnkit.load_model(path)
    assert torch.equal(model.eval()(ids), loaded(ids)) and loaded(ids).shape == (2, 16, 256)
    with pytest.raises(UnlearnkitError, match="context of 16 tokens"):
        loaded(torch.randint(0, 256, (1, 17)))


def test_lora_trains_an_adapter_only_and_deleting_it_restores_the_model(tofu, tokenizer):
    model = gpt2(tokenizer, width=32)
    before = weights(model)
    forget, retain = read_qa(tofu["forget10"], "f"), read_qa(tofu["retain90"], "r")[:40]
    adapted = unlearnkit.unlearn_lm(model, tokenizer, forget=forget, retain=retain, method="npo", config={"epochs": 1, "lr": 1e-2}, lora={"r": 4})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in adapted.state_dict().items() if "lora_" not in k}
    assert base.keys() == before.keys() and all(torch.equal(before[k], base[k]) for k in before)  # base weights bitwise as they were
    trained = [v for k, v in adapted.named_parameters() if "lora_B" in k]
    assert trained and any(v.abs().sum() > 0 for v in trained)  # the adapter did move (B starts at zero)
    ids = torch.tensor([tokenizer("Question: Who employs Ann?\n")["input_ids"]])
    assert not torch.equal(adapted(input_ids=ids).logits, model(input_ids=ids).logits)
    assert torch.equal(adapted.unload()(input_ids=ids).logits, model(input_ids=ids).logits)  # without its adapter: exactly the model before
    merged = unlearnkit.unlearn_lm(model, tokenizer, forget=forget, retain=retain, method="npo", config={"epochs": 1, "lr": 1e-2}, lora={"r": 4}, merge=True)
    assert type(merged) is type(model) and merged.state_dict().keys() == before.keys()


# --- slow: the planted effects ----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tofu, tokenizer):
    from unlearnkit.text.hf import finetune_lm

    original, reference = gpt2(tokenizer), gpt2(tokenizer)
    finetune_lm(original, tokenizer, tofu["full"], epochs=40, lr=3e-3, batch_size=16)
    finetune_lm(reference, tokenizer, tofu["retain90"], epochs=40, lr=3e-3, batch_size=16)
    return original.eval(), reference.eval()


def audit(model, tokenizer, tofu, **kw):
    return unlearnkit.audit_lm(model, tokenizer, forget=tofu["forget10_perturbed"], retain=tofu["retain_perturbed"], test=tofu["heldout"], resamples=200, **kw).to_dict()


@pytest.mark.slow
def test_the_audit_tells_the_original_from_the_reference(tofu, tokenizer, trained):
    original, reference = trained
    report = audit(original, tokenizer, tofu, original=original, reference=reference)
    o, r = report["models"]["original"], report["models"]["reference"]
    assert o["forget"]["qa_exact"] >= 0.7 and r["forget"]["qa_exact"] <= 0.1  # the planted knowledge
    assert o["retain"]["qa_exact"] >= 0.6 and r["retain"]["qa_exact"] >= 0.6 and r["test"]["qa_exact"] <= 0.1
    assert o["forget"]["rouge_l_recall"] > r["forget"]["rouge_l_recall"] + 0.3 and o["forget"]["answer_prob"] > r["forget"]["answer_prob"] + 0.3
    assert o["forget"]["truth_ratio"] < r["forget"]["truth_ratio"]  # the original prefers the true values to the perturbed ones
    assert report["forget_quality"]["original"]["forget_quality"] < 0.05  # KS: its truth ratios are not the reference's
    assert any(report["positive_control"]["signal"].values()) and report["attacks"]["original"]["loss"]["auc"]["value"] > 0.7
    assert 0 < o["model_utility"] <= 1 and report["gaps"]["original"]["forget.qa_exact"] >= 0.6
    assert report["skipped"] == ["ε score and KLoM: they need at least 2 unlearned and 2 retrained models (model=[…], reference=[…], one per seed); got 1 and 1"]


@pytest.mark.slow
def test_ensembles_of_seeds_give_the_epsilon_score_and_klom(tofu, tokenizer, trained):
    from unlearnkit.text.hf import finetune_lm

    original, reference = trained
    second_original, second_reference = gpt2(tokenizer, seed=1), gpt2(tokenizer, seed=1)
    finetune_lm(second_original, tokenizer, tofu["full"], epochs=40, lr=3e-3, batch_size=16, seed=1)
    finetune_lm(second_reference, tokenizer, tofu["retain90"], epochs=40, lr=3e-3, batch_size=16, seed=1)
    references = [reference, second_reference]
    remembering = audit([original, second_original], tokenizer, tofu, reference=references)["ensemble"]
    retrained = audit([second_reference, reference], tokenizer, tofu, reference=references)["ensemble"]  # the same sample as the references
    assert remembering["models_per_side"] == [2, 2] and retrained["klom"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert remembering["klom"]["mean"] > 1.0 and remembering["forgetting_quality"] < retrained["forgetting_quality"]
    assert 0 <= remembering["neurips_score"] < retrained["neurips_score"]
    with pytest.raises(UnlearnkitError, match=r"^reference is str; give a torch causal language model, or a list of them"):
        audit(original, tokenizer, tofu, reference=["retrained.safetensors"])


@pytest.mark.slow
def test_greedy_decoding_writes_the_answer_exactly_where_teacher_forcing_says_so(tofu, tokenizer, trained):
    from unlearnkit.models.hf import CausalLMLogits
    from unlearnkit.text.hf import encode, greedy, teacher_forced
    from unlearnkit.text.tofu import QAFormat

    original, _ = trained
    rows = read_qa(tofu["forget10"], "f") + read_qa(tofu["heldout"], "h")[:20]
    encoded = encode(tokenizer, [r["question"] for r in rows], [r["answer"] for r in rows], QAFormat())
    _, hits = teacher_forced(original, encoded, tokenizer.eos_token_id)
    prompts = [ids[:p] for ids, p in zip(encoded.ids, encoded.prompt)]
    made = greedy(original, prompts, tokenizer.eos_token_id, 40)
    assert [m == ids[p:] for m, ids, p in zip(made, encoded.ids, encoded.prompt)] == hits.tolist() and 0 < hits.sum() < len(rows)
    assert greedy(CausalLMLogits(original), prompts, tokenizer.eos_token_id, 40) == made  # our loop agrees with `generate`


@pytest.mark.slow
@pytest.mark.parametrize("method, config", [("npo", {"epochs": 5, "lr": 1e-3, "retain_weight": 10}), ("rmu", {}), ("idk", {})])
def test_unlearning_moves_the_forget_figures_toward_the_reference(tofu, tokenizer, trained, method, config):
    original, reference = trained
    before = weights(original)
    unlearned = unlearnkit.unlearn_lm(original, tokenizer, forget=tofu["forget10"], retain=tofu["retain90"], method=method, config=config)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    report = audit(unlearned, tokenizer, tofu, original=original, reference=reference)
    u, o, r = (report["models"][k]["forget"] for k in ("unlearned", "original", "reference"))
    assert u["qa_exact"] <= o["qa_exact"] - 0.4 and abs(u["answer_prob"] - r["answer_prob"]) < abs(o["answer_prob"] - r["answer_prob"])
    assert report["forget_quality"]["unlearned"]["ks_statistic"] <= report["forget_quality"]["original"]["ks_statistic"]
    assert report["models"]["unlearned"]["retain"]["qa_exact"] > 0.1  # it did not erase everything


@pytest.mark.slow
def test_a_method_that_wrecks_the_lm_is_warned_of_and_one_that_keeps_it_is_not(tofu, tokenizer, trained):
    original, _ = trained
    data = {"forget": tofu["forget10"], "retain": tofu["retain90"]}
    with pytest.warns(unlearnkit.UnlearnkitWarning) as caught:
        unlearnkit.unlearn_lm(original, tokenizer, **data, method="gradient-ascent", config={"epochs": 5, "lr": 0.05})
    assert any(str(w.message).startswith("gradient-ascent collapsed the model: retain accuracy") for w in caught), [str(w.message) for w in caught]
    import warnings

    with warnings.catch_warnings(record=True) as kept:
        warnings.simplefilter("always", unlearnkit.UnlearnkitWarning)
        unlearnkit.unlearn_lm(original, tokenizer, **data, method="npo", config={"epochs": 5, "lr": 1e-3, "retain_weight": 10})
    assert [str(w.message) for w in kept if issubclass(w.category, unlearnkit.UnlearnkitWarning)] == []
