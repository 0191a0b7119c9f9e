"""Recommenders: the planted log, the two recommenders, BPR through `fit`, user-level deletion
methods, user-sharded SISA, and the evidence (ranking figures, membership attack) against the
retrained model. fp32 throughout; figures are compared with margins, weights bitwise only
between runs on this machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate.stats import has_signal
from unlearnkit.methods import list_methods, run_method
from unlearnkit.presets import get_preset, validated
from unlearnkit.recsys.data import LogSpec, generate, split_users
from unlearnkit.recsys.evaluate import evaluate_recommender, ranking_metrics
from unlearnkit.recsys.models import create_recommender, list_recommenders
from unlearnkit.recsys.run import RECSYS_METHODS, prepare_recsys, recommender_spec, recsys_task, train_reference_recommender
from unlearnkit.recsys.sisa import delete_users, shard_rows, train_shard, train_user_shards
from unlearnkit.recsys.training import one_thread, train_recommender
from unlearnkit.store import load_model, save_model
from unlearnkit.train import Checkpoint, Recipe

SMOKE = get_preset("recsys-smoke")
SMALL_LOG = LogSpec(users=120, items=80, per_user=10)
QUICK = Recipe(epochs=5, batch_size=128, lr=0.01, weight_decay=0.0, optimizer="adamw", schedule="onecycle", warmup=0.1, precision="fp32")


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The recsys-smoke preset's log and split (seed 0), its original and retrained models."""
    setup = prepare_recsys(SMOKE, seed=0, cache=tmp_path_factory.mktemp("store"))
    return setup, train_reference_recommender("original", setup, 0), train_reference_recommender("retrain", setup, 0)


def task_of(setup, original: torch.nn.Module):
    return recsys_task(setup.log, setup.split, original, setup.preset.recipe, seed=0)


def one_line(error) -> bool:
    return "\n" not in str(error.value)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_the_log_is_seeded_fingerprinted_and_holds_out_part_of_every_user():
    log, again, other = generate(SMALL_LOG), generate(SMALL_LOG), generate(SMALL_LOG.model_copy(update={"seed": 1}))
    assert log.fingerprint == again.fingerprint and np.array_equal(log.train_items, again.train_items)
    assert other.fingerprint != log.fingerprint
    per_user_train = np.bincount(log.train_users, minlength=SMALL_LOG.users)
    per_user_test = np.bincount(log.test_users, minlength=SMALL_LOG.users)
    assert (per_user_train + per_user_test == SMALL_LOG.per_user).all() and (per_user_test == 2).all()
    assert not (log.matrix(np.arange(SMALL_LOG.users)) & log.matrix(np.arange(SMALL_LOG.users), "test")).any()


def test_users_interact_with_their_planted_genres():
    log = generate(LogSpec(users=300, items=200))
    affinity = log.user_taste @ log.item_genres.T
    chosen = affinity[log.train_users, log.train_items].mean()
    assert chosen > 2 * affinity.mean()  # taste decides; measured about 4× on this log
    flat = generate(LogSpec(users=300, items=200, sharpness=0.0, popularity=0.0))
    assert (flat.user_taste @ flat.item_genres.T)[flat.train_users, flat.train_items].mean() < 1.2 * affinity.mean()


def test_a_deletion_request_names_known_users_once_or_fails_in_one_line(tmp_path):
    log = generate(SMALL_LOG)
    assert split_users(log, "users:7,3", seed=0).forget_users.tolist() == [3, 7]
    assert split_users(log, 0.1, seed=0).forget_users.size == 12 and split_users(log, 5, seed=0).forget_users.size == 5
    assert np.array_equal(split_users(log, 0.1, seed=1).forget_users, split_users(log, 0.1, seed=1).forget_users)
    request = tmp_path / "requests.csv"
    request.write_text("user_id\n4\n9\n")
    assert split_users(log, f"file:{request}", seed=0).forget_users.tolist() == [4, 9]
    cases = {"users:3,500": "user id 500 is not in the log (ids 0 to 119)", "users:3,3": "names user 3 more than once",
             "users:x": "user id 'x' is not an integer", "users:-1": "user id -1 is not in the log", 120: "forgets 120 of 120 users",
             1.5: "give a fraction between 0 and 1", "cat": "a recsys preset forgets a fraction", f"file:{tmp_path / 'none.csv'}": "does not exist"}
    for forget, message in cases.items():
        with pytest.raises(UnlearnkitError, match=re.escape(message)) as error:
            split_users(log, forget, seed=0)
        assert one_line(error)
    request.write_text("subject_id\n4\n")
    with pytest.raises(UnlearnkitError, match="needs a user_id column"):
        split_users(log, f"file:{request}", seed=0)


@pytest.mark.parametrize("name", ["mf", "two-tower"])
def test_every_recommender_scores_pairs_as_its_full_lists_and_round_trips_through_the_store(tmp_path, name):
    assert name in list_recommenders()
    torch.manual_seed(0)
    model = create_recommender(name, num_users=10, num_items=7, dim=4)
    users, items = torch.tensor([0, 3, 9]), torch.tensor([6, 0, 2])
    full = model(users)
    assert full.shape == (3, 7) and torch.isfinite(full).all()
    assert torch.allclose(model.score(users, items), full[torch.arange(3), items], atol=1e-6)
    loaded = load_model(save_model(model, tmp_path / "model.safetensors"))
    assert same_weights(model, loaded) and torch.equal(loaded(users), model.eval()(users))


def test_unknown_recommenders_and_bad_arguments_fail_in_one_line():
    with pytest.raises(UnlearnkitError, match="recommender 'svd' is not registered; choose one of mf, two-tower") as error:
        create_recommender("svd", 5, 5)
    assert one_line(error)
    with pytest.raises(UnlearnkitError, match="rejected its arguments"):
        create_recommender("mf", 5, 5, depth=2)
    with pytest.raises(UnlearnkitError, match="dim must be at least 1"):
        create_recommender("mf", 5, 5, dim=0)
    with pytest.raises(UnlearnkitError, match="field 'model': recommender 'resnet18' is not registered"):
        validated({**SMOKE.model_dump(), "model": {"name": "resnet18"}}, "field 'model'")


def test_bpr_training_is_bitwise_repeatable_for_a_seed():
    log = generate(SMALL_LOG)
    models = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        model = create_recommender("mf", log.num_users, log.num_items, dim=8)
        train_recommender(model, log.source(np.arange(log.num_users)), QUICK, seed=seed)
        models.append(model)
    assert same_weights(models[0], models[1]) and not same_weights(models[0], models[2])


@pytest.mark.parametrize("name", ["mf", "two-tower"])
def test_both_recommenders_learn_the_tastes_beyond_popularity(smoke, name):
    setup, original, _ = smoke
    log, users = setup.log, setup.split.retain_users
    if name == "mf":
        model = original.model
    else:
        torch.manual_seed(0)
        model = create_recommender(name, log.num_users, log.num_items, dim=32)
        train_recommender(model, log.source(users), SMOKE.recipe, seed=0)
    learned = ranking_metrics(model(torch.from_numpy(users)).detach(), log.matrix(users, "test"), log.matrix(users))["recall"]
    popularity = torch.from_numpy(log.item_popularity).float().expand(len(users), -1)  # the true popularity, not a fitted one
    by_popularity = ranking_metrics(popularity, log.matrix(users, "test"), log.matrix(users))["recall"]
    assert learned > 1.1 * by_popularity, (learned, by_popularity)  # measured on this log: mf 1.26×, two-tower 1.18×


def test_recall_and_ndcg_on_a_hand_made_list():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    relevant = torch.tensor([[True, False, True, False, False], [True, False, False, False, False]])
    figures = ranking_metrics(scores, relevant, k=2)
    # user 0: one of its 2 relevant items in the top 2 (rank 1); user 1: its one item is last
    assert figures["recall"] == pytest.approx((1 / 2 + 0) / 2)
    assert figures["ndcg"] == pytest.approx((1 / (1 + 1 / np.log2(3)) + 0) / 2)
    exclude = torch.tensor([[True, False, False, False, False], [False] * 5])
    assert ranking_metrics(scores, relevant, exclude, k=2)["recall"] == pytest.approx((1 / 2 + 0) / 2)  # item 2 moves up to rank 2


def test_the_original_recommends_the_deleted_users_own_items_and_the_retrained_model_does_not(smoke):
    setup, original, retrain = smoke
    kept = evaluate_recommender(original.model, setup.log, setup.split, resamples=300)
    gone = evaluate_recommender(retrain.model, setup.log, setup.split, resamples=300)
    # measured: own items 0.75 vs 0.18, attack AUC 0.90 vs 0.55 (recsys-smoke, seed 0)
    assert kept.figures["recall_forget_train"] > gone.figures["recall_forget_train"] + 0.3
    assert kept.figures["attack_auc"] > gone.figures["attack_auc"] + 0.2 and kept.figures["attack_auc"] > 0.75
    assert has_signal(kept.attack, gone.attack)
    assert gone.attack.intervals["auc"][0] < 0.5 < gone.attack.intervals["auc"][1] + 0.05
    assert abs(kept.figures["recall_retain"] - gone.figures["recall_retain"]) < 0.05  # the kept users lose nothing


def test_the_recsys_methods_are_registered_apart():
    assert set(RECSYS_METHODS) | {"retrain"} == set(list_methods(modality="recsys"))
    assert "prune-l1" not in list_methods(modality="recsys") and "sisa" in list_methods()


@pytest.mark.parametrize("name, epochs", [("neggrad-plus", 3.0), ("kl", 10.0)])
def test_methods_that_touch_the_deleted_users_move_their_lists_and_leave_the_input_untouched(smoke, name, epochs):
    """Measured (recsys-smoke, seed 0): own items recalled 0.75 → 0.49 (neggrad-plus), → 0.60 (kl)."""
    setup, original, _ = smoke
    before = {k: v.clone() for k, v in original.model.state_dict().items()}
    result = run_method(name, original.model, task_of(setup, original.model), {"epochs": epochs}, modality="recsys")
    assert all(torch.equal(before[k], v) for k, v in original.model.state_dict().items())
    was = evaluate_recommender(original.model, setup.log, setup.split, resamples=200).figures
    now = evaluate_recommender(result.model, setup.log, setup.split, resamples=200).figures
    assert now["recall_forget_train"] < was["recall_forget_train"] - 0.1, (name, now, was)


def test_finetune_keeps_the_kept_users_recall(smoke):
    setup, original, _ = smoke
    result = run_method("finetune", original.model, task_of(setup, original.model), modality="recsys")
    was = evaluate_recommender(original.model, setup.log, setup.split, resamples=200).figures
    assert evaluate_recommender(result.model, setup.log, setup.split, resamples=200).figures["recall_retain"] > was["recall_retain"] - 0.05


def test_the_retrain_method_is_bitwise_the_stored_retrained_model(smoke):
    setup, original, retrain = smoke
    result = run_method("retrain", original.model, task_of(setup, original.model), modality="recsys")
    assert same_weights(result.model, retrain.model)


class Crash(Exception):
    pass


@pytest.mark.parametrize("name", ["finetune", "neggrad-plus", "kl"])
def test_every_recsys_method_resumes_bitwise_after_a_crash(smoke, tmp_path, name):
    class CrashingCheckpoint(Checkpoint):
        def save(self, *args, **kwargs):
            super().save(*args, **kwargs)
            raise Crash()

    setup, original, _ = smoke
    task = task_of(setup, original.model)
    path = tmp_path / "method.checkpoint.safetensors"
    uninterrupted = run_method(name, original.model, task, modality="recsys").model
    with pytest.raises(Crash):
        run_method(name, original.model, task, checkpoint=CrashingCheckpoint(path, key=name, every=5), modality="recsys")
    assert path.exists()
    resumed = run_method(name, original.model, task, checkpoint=Checkpoint(path, key=name, every=5), modality="recsys").model
    assert same_weights(uninterrupted, resumed)


def test_sisa_deletion_is_exact_and_leaves_the_other_shards_alone(smoke):
    setup, _, _ = smoke
    log = setup.log
    everyone = log.source(np.arange(log.num_users))
    ensemble, _ = train_user_shards(recommender_spec(setup), everyone, 3, QUICK, seed=0)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in ensemble.models]
    user = int(setup.split.forget_users[0])
    shard = int(ensemble.assignment[user])
    kept_users = np.setdiff1d(np.arange(log.num_users), [user])
    deletion = delete_users(ensemble, np.array([user]), log.source(kept_users), QUICK)
    assert deletion.shards == [shard] and not ensemble.holds[:, user].any()

    fresh, _ = train_user_shards(recommender_spec(setup), everyone, 3, QUICK, seed=0)
    train_shard(fresh, shard, shard_rows(fresh, log.source(kept_users), shard), QUICK)  # trained from scratch without the user
    assert same_weights(ensemble.models[shard], fresh.models[shard])
    assert not all(torch.equal(before[shard][k], v) for k, v in ensemble.models[shard].state_dict().items())
    for other in set(range(3)) - {shard}:
        assert all(torch.equal(before[other][k], v) for k, v in ensemble.models[other].state_dict().items())
    users = torch.arange(log.num_users)
    routed = torch.stack([ensemble.models[int(ensemble.assignment[u])](u[None])[0] for u in users])
    assert torch.allclose(ensemble(users), routed, atol=1e-6)  # one user at a time: the same sums, another kernel blocking


def test_the_sisa_method_deletes_from_an_ensemble_and_refuses_anything_else(smoke):
    setup, original, _ = smoke
    task = task_of(setup, original.model)
    with pytest.raises(UnlearnkitError, match="sisa deletes from a user-sharded ensemble, not a MatrixFactorization") as error:
        run_method("sisa", original.model, task, modality="recsys")
    assert one_line(error)
    ensemble, _ = train_user_shards(recommender_spec(setup), setup.log.source(np.arange(setup.log.num_users)), 2, QUICK, seed=0)
    with pytest.raises(UnlearnkitError, match="the ensemble has 2 shards but the config asks for 4"):
        run_method("sisa", ensemble, task, modality="recsys")
    task = recsys_task(setup.log, setup.split, original.model, QUICK, seed=0)
    result = run_method("sisa", ensemble, task, {"shards": 2}, modality="recsys").model
    assert not result.holds[:, torch.from_numpy(setup.split.forget_users)].any()
    assert result.holds.any(0).sum() == setup.split.retain_users.size


def test_a_recsys_run_writes_figures_gaps_command_and_machine(tmp_path):
    from unlearnkit.run import run_experiment

    results = run_experiment(preset="recsys-smoke", methods="finetune", out=tmp_path / "run", cache=tmp_path / "store")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["modality"] == "recsys" and saved["command"].startswith("unlearnkit run --preset recsys-smoke --methods finetune")
    assert saved["machine"] and saved["positive_control"]["passed"] and saved["k"] == 10
    rows = {row["name"]: row for row in saved["rows"]}
    assert list(rows) == ["original", "retrain", "finetune"]
    assert rows["retrain"]["gap_attack_auc"] == 0 and rows["original"]["gap_recall_forget_train"] > 0.3
    assert rows["original"]["attack_auc_ci"][0] <= rows["original"]["attack_auc"] <= rows["original"]["attack_auc_ci"][1]
    assert "| finetune |" in (tmp_path / "run" / "table.md").read_text() and results["rows"] == saved["rows"]


def test_recsys_run_errors_are_one_line(tmp_path):
    from unlearnkit.evidence import EvidenceOptions
    from unlearnkit.run import run_experiment

    cases = [({"methods": "prune-l1"}, "unknown recsys method 'prune-l1'"), ({"data": "cifar"}, "generates its own interaction log"),
             ({"evidence": EvidenceOptions(level="full")}, "drop --evidence full"), ({"forget": "users:5000"}, "user id 5000 is not in the log")]
    for arguments, message in cases:
        with pytest.raises(UnlearnkitError, match=message) as error:
            run_experiment(preset="recsys-smoke", out=tmp_path / "x", cache=tmp_path / "store", **arguments)
        assert one_line(error)


@pytest.mark.slow
def test_the_cli_runs_recsys_smoke_with_every_default_method(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "unlearnkit", "run", "--preset", "recsys-smoke", "--out", str(out), "--cache", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "UNLEARNKIT_QUIET": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    assert list(rows) == ["original", "retrain", *RECSYS_METHODS]
    assert abs(rows["sisa"]["attack_auc"] - rows["retrain"]["attack_auc"]) < 0.15 and rows["sisa"]["shards_retrained"] >= 1
    assert "recall@10" in done.stdout
