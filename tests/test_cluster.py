"""Scale-out: the sweep grid, jobs in process and on a real local Ray cluster (a head node and a
second worker node, each its own raylet process on 127.0.0.1), a worker killed mid-job, and
tuning that resumes after its driver is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from unlearnkit.cluster import Executor, Job, JobError
from unlearnkit.errors import UnlearnkitError
from unlearnkit.sweep import expand, parse_seeds, parse_value_lists, split_forget_specs, sweep

METHODS = ["finetune", "kl"]


def test_seeds_scenarios_and_value_lists_are_parsed():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("0,2,5-6") == [0, 2, 5, 6]
    assert split_forget_specs("random:0.1,class:cat,dog,skewed:animals=3:0.1") == ["random:0.1", "class:cat,dog", "skewed:animals=3:0.1"]
    grid = parse_value_lists(["finetune.lr=0.1,0.2", "finetune.epochs=1,2", "kl.forget_weight=0.5"], METHODS)
    assert grid == {"finetune": {"lr": [0.1, 0.2], "epochs": [1, 2]}, "kl": {"forget_weight": [0.5]}}
    cells = expand(METHODS, [0, 1], ["random:0.1", "class:cat"], grid)
    assert len(cells) == 2 * 2 * (4 + 1)
    assert len({cell.folder for cell in cells}) == len(cells)


@pytest.mark.parametrize("call, message", [
    (lambda: parse_seeds("3-1"), r"--seeds '3-1' is not a list of seeds"),
    (lambda: parse_seeds("0,0"), r"names a seed twice"),
    (lambda: parse_value_lists(["finetune.lr="], METHODS), r"--set 'finetune.lr=' has an empty value list"),
    (lambda: parse_value_lists(["finetune.lr=0.1,,0.2"], METHODS), r"has an empty value list"),
    (lambda: parse_value_lists(["magic.lr=0.1"], METHODS), r"unknown method 'magic'"),
    (lambda: parse_value_lists(["finetune.lr=-1"], METHODS), r"method 'finetune' config field 'lr'"),
    (lambda: split_forget_specs("random:0.1,,class:cat"), r"holds an empty scenario"),
    (lambda: Executor(workers=0), r"--workers 0 is invalid"),
])
def test_bad_sweep_input_is_one_line(call, message):
    with pytest.raises(UnlearnkitError, match=message):
        call()


@pytest.mark.slow
def test_an_unknown_address_is_one_line_and_does_not_hang():
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "unlearnkit", "sweep", "--preset", "smoke", "--address", "127.0.0.1:9"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "no Ray cluster answers at 127.0.0.1:9" in done.stderr
    assert time.perf_counter() - started < 60


def fails_plainly(x: int) -> int:
    if x == 2:
        raise UnlearnkitError("two is not allowed")
    return x * 10


def test_a_user_error_in_a_job_is_its_one_line_or_a_value_when_tolerated():
    executor = Executor()
    jobs = [Job(f"job {i}", fails_plainly, {"x": i}) for i in range(4)]
    with pytest.raises(UnlearnkitError, match=r"^job 2: two is not allowed$"):
        executor.map(jobs, "test")
    assert executor.map(jobs, "test", tolerate_errors=True) == [0, 10, JobError("two is not allowed"), 30]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import synthetic_arrays, write_binary

    return write_binary(tmp_path_factory.mktemp("data") / "cifar-10-batches-bin", *synthetic_arrays(n_train=400, n_test=160))


@pytest.fixture(scope="module")
def sequential(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("sequential")
    summary = sweep(preset="smoke", data=data, methods=METHODS, seeds="0-1", out=root / "out", cache=root / "cache", executor=Executor())
    return summary, root / "out"


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and a second node (one CPU each), each a raylet process of its own."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def weights(out: Path) -> dict[str, str]:
    """sha256 of every model a sweep wrote (its unlearned models), by relative path."""
    return {str(p.relative_to(out)): json.loads(p.read_text())["weights"]["sha256"] for p in sorted(out.rglob("models/*.json"))}


def reference_paths(summary_out: Path) -> dict[str, str]:
    results = [json.loads(p.read_text()) for p in sorted(summary_out.rglob("results.json"))]
    return {f"{r['seed']}/{row['name']}": Path(row["model"]).parent.name for r in results for row in r["rows"] if row["name"] in ("original", "retrain")}


def kill_one_running_job(after_seconds: float, killed: list) -> None:
    """SIGKILL the first Ray worker process seen running a job, `after_seconds` after it appears."""
    deadline = time.time() + 240
    while time.time() < deadline and not killed:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::run_job"):
                time.sleep(after_seconds)
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                except ProcessLookupError:
                    continue
                return
        time.sleep(0.2)


@pytest.mark.slow
def test_a_sweep_on_a_ray_cluster_matches_the_sequential_path_bitwise(sequential, ray_cluster, data, tmp_path):
    seq_summary, seq_out = sequential
    executor = Executor(address=ray_cluster.address)
    assert executor.slots == 2 and "2 node(s)" in executor.describe()
    summary = sweep(preset="smoke", data=data, methods=METHODS, seeds="0-1", out=tmp_path / "out", cache=tmp_path / "cache", executor=executor)
    assert len(weights(seq_out)) == 4 and weights(tmp_path / "out") == weights(seq_out)
    assert reference_paths(tmp_path / "out") == reference_paths(seq_out)  # the same store addresses, hence the same reference weights
    assert [row["forget_acc"] for row in summary["table"]] == [row["forget_acc"] for row in seq_summary["table"]]


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_and_the_sweep_ends_identical(sequential, ray_cluster, data, tmp_path):
    _, seq_out = sequential
    killed: list[int] = []
    killer = threading.Thread(target=kill_one_running_job, args=(1.0, killed), daemon=True)
    killer.start()
    sweep(preset="smoke", data=data, methods=METHODS, seeds="0-1", out=tmp_path / "out", cache=tmp_path / "cache", executor=Executor(address=ray_cluster.address))
    killer.join(timeout=5)
    assert killed, "no worker was running a job to kill"
    assert weights(tmp_path / "out") == weights(seq_out)


@pytest.mark.slow
def test_tune_runs_exactly_its_budget_across_a_killed_driver(ray_cluster, data, tmp_path):
    """4 trials on the 2-node cluster: the driver is SIGKILLed while trials run, the same
    command started again finishes the study with exactly 4 finished trials."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "unlearnkit", "tune", "finetune", "--preset", "smoke", "--data", str(data), "--trials", "4",
               "--storage", storage, "--export", str(tmp_path / "export"), "--cache", str(tmp_path / "cache"), "--address", ray_cluster.address]

    def states() -> list[str]:
        try:
            return [t.state.name for t in optuna.load_study(study_name="finetune-smoke-seed0", storage=storage).get_trials(deepcopy=False)]
        except Exception:  # the study does not exist yet
            return []

    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ("COMPLETE" in states() and "RUNNING" in states()):
        time.sleep(0.3)
    first.kill()
    first.wait(timeout=30)
    interrupted = states()
    assert "RUNNING" in interrupted and interrupted.count("COMPLETE") < 4
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    final = states()
    assert final.count("COMPLETE") == 4 and "RUNNING" not in final
    exported = json.loads((tmp_path / "export" / "finetune-smoke-seed0.json").read_text())
    assert len([t for t in exported["trials"] if t["state"] == "COMPLETE"]) == 4
    assert exported["best"]["distance"] == min(t["distance"] for t in exported["trials"] if t["distance"] is not None)


@pytest.mark.slow
def test_full_evidence_ensembles_are_jobs_that_leave_the_cells_nothing_to_train(data, tmp_path):
    """With --evidence full, the retrained ensemble, the U-LiRA shadows and every unlearned
    ensemble member are made by jobs of their own (on Ray, spread over the workers); the cell
    then finds every one of them in the store."""
    from unlearnkit.evidence import EvidenceOptions

    summary = sweep(preset="smoke", data=data, methods=["finetune"], seeds="0", out=tmp_path / "out", cache=tmp_path / "cache",
                    evidence=EvidenceOptions(level="full", n=2, k=2, resamples=100), executor=Executor())
    results = json.loads((tmp_path / "out" / summary["cells"][0]["folder"] / "results.json").read_text())
    meta = results["evidence"]
    assert meta["models_trained"] == 0 and meta["models_reused"] > 0
    assert "neurips" in results["rows"][2]["evidence"]
