"""Text: the facts corpus, the tiny GPT, the language-model methods and their evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli, run_main

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import list_methods, make_config, run_method
from unlearnkit.presets import get_preset
from unlearnkit.text.data import KINDS, decode, split_people, text_data
from unlearnkit.text.evaluate import generate, lm_outputs, membership_attacks, text_metrics
from unlearnkit.text.facts import REFUSAL, SECRETS, FactsSpec, generate as generate_corpus
from unlearnkit.text.run import TEXT_METHODS, prepare_text, text_task, train_language_model
from unlearnkit.train import Checkpoint

# fp32: bf16 kernels round differently on the Intel and AMD CPUs we run on (measured: in bf16 on
# the Intel kind, idk's 10 epochs did not teach the refusal), and no test may hinge on that
SMOKE = get_preset("facts-smoke")
SMOKE = SMOKE.model_copy(update={"recipe": SMOKE.recipe.model_copy(update={"precision": "fp32"})})


def test_the_generator_is_deterministic_and_seeded():
    a, b = generate_corpus(FactsSpec(people=20)), generate_corpus(FactsSpec(people=20))
    assert [e.text for e in a.examples] == [e.text for e in b.examples] and a.fingerprint == b.fingerprint
    other = generate_corpus(FactsSpec(people=20, seed=1))
    assert other.names != a.names and other.fingerprint != a.fingerprint


def test_every_fact_carries_its_value_and_every_person_ten_attributes():
    corpus = generate_corpus(FactsSpec(people=10, paraphrases=3))
    for example in corpus.examples:
        if example.kind == "filler":
            assert example.person == -1
            continue
        start, end = example.value_span
        value = corpus.attributes[example.person][example.attribute]
        assert example.text.encode()[start:end].decode().rstrip("\n") == value
        assert corpus.names[example.person] in example.text
    per_person = [sum(e.person == p and e.kind == "qa" for e in corpus.examples) for p in range(10)]
    assert per_person == [10] * 10


def test_no_held_out_person_appears_in_training_rows():
    setup = prepare_text(SMOKE, seed=0)
    data, split = setup.data, setup.split
    trained_text = "".join(decode(np.r_[data.x[r], data.y[r][-1:]]) for r in np.r_[split.retain, split.forget])
    for person in np.r_[split.test_people, split.val_people]:
        assert data.corpus.names[person] not in trained_text
        for secret in SECRETS:
            assert data.corpus.attributes[person][secret] not in trained_text
    assert set(split.forget) == set(data.rows_of(split.forget_people))
    assert not set(split.forget) & set(split.retain) and not set(split.test) & set(split.retain)


def test_a_request_names_people_by_index_or_name_and_refuses_strangers():
    setup = prepare_text(SMOKE, seed=0)
    data = setup.data
    trained = np.setdiff1d(np.arange(data.num_people), data.corpus.heldout)
    split = split_people(data, [str(trained[0]), data.corpus.names[trained[1]]], seed=0)
    assert split.forget_people.tolist() == sorted(trained[:2].tolist())
    with pytest.raises(UnlearnkitError, match="'Nobody Atall', who is not in the corpus"):
        split_people(data, ["Nobody Atall"], seed=0)
    with pytest.raises(UnlearnkitError, match="was never trained on"):
        split_people(data, [str(data.corpus.heldout[0])], seed=0)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The facts-smoke original (trained once for the module) and its setup."""
    setup = prepare_text(SMOKE, seed=0, cache=tmp_path_factory.mktemp("store"))
    original = train_language_model("original", setup, seed=0)
    return setup, original


@pytest.fixture(scope="module")
def retrained(smoke):
    """Two retrained models (seeds 0 and 1) in the module's store: the audit test compares them,
    and the CLI run's N = 2 ensemble finds them there."""
    setup, _ = smoke
    return [train_language_model("retrain", setup, seed=seed) for seed in (0, 1)]


def test_the_tiny_gpt_memorizes_the_smoke_corpus(smoke):
    setup, original = smoke
    metrics = text_metrics(lm_outputs(original.model, setup.data, setup.split))
    assert metrics["qa_retain"] >= 0.95 and metrics["qa_forget"] >= 0.95
    majority = setup.data.corpus.majority_rate(setup.split.test_people)
    assert metrics["qa_test"] <= majority + 0.15
    assert metrics["extraction_forget"] >= 0.9 and metrics["extraction_test"] == 0.0


def prompt_before_value(example) -> str:
    """The example's text up to its personal value: what a greedy decoder is asked to complete."""
    return example.text.encode()[: example.value_span[0]].decode()


def test_extraction_and_min_k_on_planted_cases(smoke):
    """A memorized secret is extracted by real greedy decoding and an unseen one is not; the
    teacher-forced check agrees with decoding; min-k% ranks a trained row above an unseen one."""
    setup, original = smoke
    data, split = setup.data, setup.split
    outputs = lm_outputs(original.model, data, split)
    is_secret_fact = (data.kind == KINDS.index("fact")) & data.is_secret
    for rows, expected in ((split.forget, True), (split.test, False)):
        row = rows[is_secret_fact[rows]][0]
        example = data.corpus.examples[row]
        prompt = prompt_before_value(example)
        value = data.corpus.attributes[example.person][example.attribute]
        completion = generate(original.model, prompt)
        assert completion.startswith(value) is expected, (prompt, completion, value)
        assert bool(outputs.value_hit[row]) is expected
    scores = outputs.attack_scores(np.r_[split.forget, split.test])
    members = scores["min-k"][: len(split.forget)]
    nonmembers = scores["min-k"][len(split.forget) :]
    assert np.median(members) > np.median(nonmembers)


def test_membership_attacks_find_the_forget_rows_on_the_original(smoke):
    setup, original = smoke
    attacks = membership_attacks(lm_outputs(original.model, setup.data, setup.split), seed=0, resamples=200)
    for name, score in attacks.items():
        assert score.intervals["auc"][0] > 0.5, name


def test_the_text_methods_are_registered_apart_from_the_image_ones():
    assert set(list_methods(modality="text")) >= set(TEXT_METHODS)
    assert "npo" not in list_methods() and "prune-l1" not in list_methods(modality="text")
    with pytest.raises(UnlearnkitError, match="unknown text method 'prune-l1'"):
        make_config("prune-l1", modality="text")


def short(name: str) -> dict:
    """Enough training for each method to forget the smoke people (measured: finetune 10 epochs
    100% → 35% QA on them, rmu 6 epochs → 35%)."""
    return {"finetune": {"epochs": 10.0}, "rmu": {"epochs": 6.0}}.get(name, {"epochs": 4.0})


@pytest.mark.slow
@pytest.mark.parametrize("name", TEXT_METHODS)
def test_every_text_method_forgets_and_leaves_its_input_untouched(smoke, name):
    setup, original = smoke
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    task = text_task(setup, original.model, seed=0)
    result = run_method(name, original.model, task, short(name), modality="text")
    assert all(torch.equal(before[k], v) for k, v in original.model.state_dict().items())
    forgot = text_metrics(lm_outputs(result.model, setup.data, setup.split))
    kept = text_metrics(lm_outputs(original.model, setup.data, setup.split))
    assert forgot["qa_forget"] < kept["qa_forget"] - 0.2, (name, forgot["qa_forget"], kept["qa_forget"])


class Crash(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("name", TEXT_METHODS)
def test_every_text_method_resumes_bitwise_after_a_crash(smoke, tmp_path, name):
    class CrashingCheckpoint(Checkpoint):
        def save(self, *args, **kwargs):
            super().save(*args, **kwargs)
            raise Crash()

    setup, original = smoke
    task = text_task(setup, original.model, seed=0)
    config = {"epochs": 2.0}
    path = tmp_path / "method.checkpoint.safetensors"
    uninterrupted = run_method(name, original.model, task, config, modality="text").model.state_dict()
    with pytest.raises(Crash):
        run_method(name, original.model, task, config, checkpoint=CrashingCheckpoint(path, key=name, every=2), modality="text")
    assert path.exists()
    resumed = run_method(name, original.model, task, config, checkpoint=Checkpoint(path, key=name, every=2), modality="text").model.state_dict()
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in resumed)


def test_idk_teaches_the_refusal(smoke):
    """Greedy answers to the forget people's questions: none is the refusal before, nearly all after
    (measured over 1 and 2 threads and generic CPU kernels: 20 epochs gave 20 of 20; 10 epochs 6–9 of 20)."""
    setup, original = smoke
    result = run_method("idk", original.model, text_task(setup, original.model, seed=0), {"epochs": 20.0}, modality="text")
    data, split = setup.data, setup.split
    prompts = [prompt_before_value(data.corpus.examples[row]) for row in split.forget[data.kind[split.forget] == KINDS.index("qa")]]

    def refusals(model):
        return np.mean([generate(model, prompt).startswith(REFUSAL) for prompt in prompts])

    assert len(prompts) >= 10
    assert refusals(original.model) == 0
    assert refusals(result.model) >= 0.8


@pytest.mark.slow
def test_run_on_facts_smoke_then_forget_a_request(smoke, retrained, tmp_path):
    """`unlearnkit run --preset` with facts-smoke (in fp32, as a preset file) writes the table,
    results.json, figures and the HTML report with the ε score and KLoM (N = 2 per side), taking
    the original and both retrained models from the module's store; `unlearnkit forget` serves
    a request file of people on that original."""
    import tomli_w

    setup, original = smoke
    cache, out, preset = setup.store.root, tmp_path / "run", tmp_path / "facts-smoke-fp32.toml"
    preset.write_text(tomli_w.dumps(json.loads(SMOKE.model_dump_json(exclude_none=True))))
    done = run_cli("run", "--preset", str(preset), "--methods", "simnpo,idk", "--evidence", "full", "--n", "2", "--resamples", "200",
                   "--cache", str(cache), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    assert list(rows) == ["original", "retrain", "simnpo", "idk"]
    assert rows["original"]["qa_forget"] >= 0.95 and rows["retrain"]["qa_forget"] <= 0.2
    assert rows["original"]["extraction_forget"] >= 0.9 and rows["retrain"]["extraction_forget"] == 0.0
    for name in ("simnpo", "idk"):
        assert 0 <= rows[name]["neurips_score"] <= 1 and rows[name]["klom"] >= 0 and rows[name]["klom_smoothed"] >= 0
        assert rows[name]["attacks"]["min-k"]["auc"]["ci95"][0] <= rows[name]["attacks"]["min-k"]["auc"]["value"]
    assert {"qa.png", "attacks.png", "losses.png"} <= {p.name for p in (out / "figures").iterdir()}
    assert "ε score" in done.stdout and "simnpo" in (out / "report.html").read_text()
    assert rows["original"]["model"] == str(original.path) and rows["retrain"]["model"] == str(retrained[0].path)  # from the store

    again = run_cli("evaluate", str(out), "--cache", str(cache), "--resamples", "200")
    assert again.returncode == 0, again.stderr[-2000:]
    evaluated = {row["name"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    assert evaluated["idk"]["qa_forget"] == rows["idk"]["qa_forget"] and evaluated["idk"]["seconds"] == rows["idk"]["seconds"]

    requests = tmp_path / "requests.csv"
    person = results["split"]["forget_people"][0]
    requests.write_text(f"subject_id\n{person}\n")
    served = run_cli("forget", "--model", rows["original"]["model"], "--requests", str(requests), "--method", "simnpo",
                     "--set", "simnpo.epochs=6", "--out", str(tmp_path / "served"))
    assert served.returncode == 0, served.stderr[-2000:]
    report = json.loads((tmp_path / "served" / "report.json").read_text())
    assert report["requests"]["people"] == [person] and report["requests"]["rows"] == 20
    assert report["after"]["qa_forget"] < report["before"]["qa_forget"]
    assert (tmp_path / "served" / "model.safetensors").is_file()


def test_text_errors_are_one_line(tmp_path):
    done = run_main("run", "--preset", "facts-smoke", "--methods", "prune-l1", "--out", str(tmp_path / "x"))
    assert done.returncode != 0 and "unknown text method 'prune-l1'" in done.stderr and "Traceback" not in done.stderr
    done = run_main("run", "--preset", "facts-smoke", "--forget", "cat", "--out", str(tmp_path / "x"))
    assert done.returncode != 0 and "a facts preset forgets a fraction" in done.stderr and "Traceback" not in done.stderr


def test_a_text_run_and_a_served_request_write_their_reports_in_process(tmp_path):
    """The text run's and `forget`'s plumbing on the smoke corpus trained for 4 epochs (the slow
    test above checks the evidence on the real preset, through the CLI)."""
    from unlearnkit.forget import forget_request
    from unlearnkit.text.run import run_text_experiment

    brief = SMOKE.model_copy(update={"recipe": SMOKE.recipe.model_copy(update={"epochs": 4})})
    results = run_text_experiment(preset=brief, methods=["idk"], out=tmp_path / "run", cache=tmp_path / "store", configs={"idk": {"epochs": 1}})
    assert [row["name"] for row in results["rows"]] == ["original", "retrain", "idk"]
    assert sorted(p.name for p in (tmp_path / "run" / "figures").iterdir()) == ["attacks.png", "losses.png", "qa.png"]
    assert "idk" in (tmp_path / "run" / "report.html").read_text()
    person = results["split"]["forget_people"][0]
    (tmp_path / "requests.csv").write_text(f"subject_id\n{person}\n")
    report = forget_request(model=results["rows"][0]["model"], requests=tmp_path / "requests.csv", method="idk", config={"epochs": 1}, seed=0, out=tmp_path / "served")
    assert report["requests"]["people"] == [person] and report["method"] == "idk"
    assert (tmp_path / "served" / "report.md").read_text().startswith("# Deletion request: 1 people")


def test_relearn_parts_take_whole_attributes_of_each_forgotten_person(smoke):
    from unlearnkit.text.robust import relearn_parts

    setup, _ = smoke
    data, split = setup.data, setup.split
    relearn, measured = relearn_parts(data, split, 0.1, seed=0)
    assert relearn.size and measured.size and not np.intersect1d(relearn, measured).size
    assert set(data.person[relearn]) == set(data.person[measured]) == set(split.forget_people.tolist())
    for person in split.forget_people:
        taught = set(data.attribute[relearn][data.person[relearn] == person])
        assert len(taught) == 1 and not taught & set(data.attribute[measured][data.person[measured] == person])  # 10% of ten attributes: one
    assert not np.array_equal(relearn, relearn_parts(data, split, 0.1, seed=1)[0])


@pytest.mark.slow
def test_the_text_relearning_and_quantization_audits_tell_the_original_from_retrained_models(smoke, retrained, tmp_path):
    from unlearnkit.evaluate.relearn import RelearnOptions
    from unlearnkit.text.robust import text_headline, text_robustness_audits

    setup, original = smoke
    retrain, other = retrained  # the second retrained model must pass as the first does
    models = {"original": original.model, "retrain": retrain.model, "other-retrain": other.model}
    options = RelearnOptions()
    found = text_robustness_audits(models, setup.data, setup.split, seed=0, audits=("relearn", "quantize"), relearn=options)
    rows = {name: text_headline(found, name, options.margin) for name in models}
    assert rows["original"]["relearn_held"] is False and rows["original"]["relearn_gap_ci95"][0] > 0.3
    assert rows["other-retrain"]["relearn_held"] is True and rows["retrain"]["relearn_gap"] == 0.0
    assert rows["original"]["int8_forget_gap"] >= 0.9 and abs(rows["other-retrain"]["int8_forget_gap"]) <= 0.1
    from unlearnkit.text.report import text_relearn_figure

    assert text_relearn_figure(found["relearn"], tmp_path / "relearn.png").read_bytes()[:4] == b"\x89PNG"  # the figure reads the audit as written


def test_the_text_table_shows_the_audit_columns_when_the_audits_ran():
    from unlearnkit.text.report import text_table

    def headers(rows):
        results = {"rows": rows, "positive_control": {"note": "none"}, "majority_answer_rate": 0.1}
        table = text_table(results)
        return [column.header for column in table.columns], [list(column.cells) for column in table.columns]

    plain = [{"name": "retrain", "qa_forget": 0.0}, {"name": "kl", "qa_forget": 0.2}]
    assert "relearn gap" not in headers(plain)[0]
    audited = [row | {"relearn_gap": gap, "int4_forget_gap": 0.0} for row, gap in zip(plain, (0.0, 0.163))]
    names, cells = headers(audited)
    assert names[-2:] == ["relearn gap", "int4 QA-forget gap"] and cells[-2] == ["0.0", "16.3"]
