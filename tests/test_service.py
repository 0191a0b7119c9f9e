"""The deletion-request service: ledger, audit chain, serving, retraining, deadlines, HTTP API.

Each ledger test runs on SQLite and on a real PostgreSQL server ($UNLEARNKIT_TEST_POSTGRES,
which `.ci/run` starts with `.ci/start-postgres`). The deployed model memorizes: it is trained
to 100% on random images with random labels, so a request's images are recognised (the attacks
see them) until they are really forgotten, and a weak unlearning run fails its verdict."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_binary

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from unlearnkit.errors import UnlearnkitError  # noqa: E402
from unlearnkit.service.db import Action, ModelVersion, Request, now  # noqa: E402
from unlearnkit.service.ledger import Ledger  # noqa: E402
from unlearnkit.service.serving import VerdictRule, retrain, serve  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]
N_TRAIN, N_TEST = 300, 200
WEAK = {"epochs": 0.05, "lr": 0.001}  # a finetune run that changes next to nothing
LENIENT = VerdictRule(max_test_drop=1.0, forget_margin=1.0, attack_margin=0.5)  # every check holds


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from unlearnkit.models import create_model
    from unlearnkit.store import save_model
    from unlearnkit.train import Recipe, Source, accuracy, fit

    root = tmp_path_factory.mktemp("service")
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (N_TRAIN, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, N_TRAIN).astype(np.int64),
              rng.integers(0, 256, (N_TEST, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, N_TEST).astype(np.int64))
    data = write_binary(root / "data", *arrays)
    torch.manual_seed(0)
    model = create_model("resnet18", width=8)
    recipe = Recipe(epochs=25, batch_size=50, lr=0.05, precision="fp32")
    fit(model, Source(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1])), recipe)
    assert accuracy(model, arrays[0], arrays[1], "fp32") == 1.0  # it memorized: the planted effect every verdict test relies on
    path = save_model(model, root / "deployed.safetensors", role="original", recipe=recipe.model_dump())
    subjects = root / "subjects.csv"
    subjects.write_text("subject_id,sample_id\n" + "".join(f"person-{i // 3},{i}\n" for i in range(90)))
    return {"data": data, "model": path, "subjects": subjects}


@pytest.fixture(scope="session")
def postgres():
    from pgserver import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def location(request, tmp_path, monkeypatch):
    """A new, empty ledger location on the backend asked for."""
    monkeypatch.setenv("UNLEARNKIT_LEDGER_DIR", str(tmp_path / "ledger-files"))
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")
        return
    server = request.getfixturevalue("postgres")
    if server is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does) and $UNLEARNKIT_TEST_POSTGRES is not set")
    import psycopg

    name = f"ledger_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def ledger(location, deployed):
    book = Ledger.open(location, create=True)
    book.register_model(deployed["model"], str(deployed["data"]), "test")
    book.import_subjects(deployed["subjects"], "test")
    yield book
    book.engine.dispose()


def statuses(book: Ledger) -> dict[str, str]:
    with book.read() as session:
        return {r.id: r.status for r in session.query(Request)}


def all_versions(book: Ledger) -> list[ModelVersion]:
    with book.read() as session:
        return list(session.query(ModelVersion).order_by(ModelVersion.id))


def execute(book: Ledger, sql: str) -> None:
    from sqlalchemy import text

    with book.engine.begin() as connection:
        for statement in sql.split(";"):
            if statement.strip():
                connection.execute(text(statement))


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_failed_verdict_goes_to_retraining_and_no_forgotten_image_comes_back(ledger):
    ledger.submit("test", "r1", subjects=["person-0", "person-1"])
    ledger.submit("test", "r2", sample_ids=[100, 101])
    served = serve(ledger, "test", method="finetune", config=WEAK)
    assert served.verdict["passed"] is False and not served.deployed  # the memorized images are still recognised
    failed = {c["check"]: c["passed"] for c in served.verdict["checks"]}
    assert failed["requested images look unseen"] is False
    assert statuses(ledger) == {"r1": "retrain_scheduled", "r2": "retrain_scheduled"}
    with ledger.read() as session:
        assert ledger.deployed(session).kind == "trained"  # the failed version was registered, not deployed
    done = retrain(ledger, "test")
    assert statuses(ledger) == {"r1": "served", "r2": "served"} and sorted(done.requests) == ["r1", "r2"]
    forgotten = {0, 1, 2, 3, 4, 5, 100, 101}
    versions = all_versions(ledger)
    assert [v.kind for v in versions] == ["trained", "unlearned", "retrained"]
    for version in versions[1:]:
        assert not forgotten & set(ledger.train_ids(version).tolist())
        assert ledger.train_ids(version).size == N_TRAIN - len(forgotten)
    assert versions[2].excluded_subjects == ["person-0", "person-1"]
    # a later batch, served from the retrained model, does not bring them back either
    ledger.submit("test", "r3", sample_ids=[200])
    later = serve(ledger, "test", method="finetune", config={"epochs": 0.2}, rule=LENIENT)
    assert later.deployed and statuses(ledger)["r3"] == "served"
    newest = all_versions(ledger)[-1]
    assert not (forgotten | {200}) & set(ledger.train_ids(newest).tolist())
    assert ledger.verify()[0] == []


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_a_passing_verdict_deploys_and_the_report_is_recorded(ledger):
    from unlearnkit.fileio import sha256_file

    ledger.submit("test", "r1", subjects=["person-3"])
    served = serve(ledger, "test", method="finetune", config={"epochs": 0.3}, rule=LENIENT)
    assert served.deployed and served.images == 3
    with ledger.read() as session:
        action = session.get(Action, served.action)
        assert ledger.deployed(session).id == served.version == action.output_version
        assert sha256_file(ledger.path(action.report_path)) == action.report_sha256
    page = ledger.path(served.report).read_text()
    assert "verdict <span class=pass>PASS</span>" in page and "data:image/png;base64," in page
    assert serve(ledger, "test").message == "no pending request"


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_verify_names_each_kind_of_tampering(ledger, location):
    ledger.submit("test", "r1", sample_ids=[7])
    ledger.submit("test", "r2", sample_ids=[8])
    assert ledger.verify()[0] == []
    last = ledger.verify()[1][0]
    cases = [
        (f"UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", "audit entry 2 (model.registered) was edited"),
        ("DELETE FROM audit_log WHERE seq = 3", "audit entry 3 is missing"),
        (f"UPDATE audit_log SET seq = 100 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = 100",
         "audit entry 3 (request.received) does not follow entry 2"),
        (f"INSERT INTO audit_log SELECT seq + 1, time, actor, event, payload, payload_sha256, prev_hash, hash FROM audit_log WHERE seq = {last}",
         f"audit entry {last + 1} (request.received) does not follow entry {last}"),
        (f"DELETE FROM audit_log WHERE seq = {last}", f"the chain's head records entry {last} but the chain ends at entry {last - 1}"),
        ("UPDATE requests SET status = 'served' WHERE id = 'r2'", "row requests/r2 differs from what audit entry"),
        ("DELETE FROM requests WHERE id = 'r1'", "row requests/r1, recorded by audit entry"),
        ("INSERT INTO subjects VALUES ('eve', 9)", "row subjects differs from what audit entry"),
        ("UPDATE state SET value = '99' WHERE key = 'deployed'", "row state/deployed differs"),
    ]
    for sql, named in cases:
        snapshot = dump(ledger)
        execute(ledger, sql)
        problems = ledger.verify()[0]
        assert problems and named in problems[0], (sql, problems[:2])
        with pytest.raises(UnlearnkitError, match="the ledger does not verify"):  # nothing is served from a tampered ledger
            serve(ledger, "test")
        restore(ledger, snapshot)
        assert ledger.verify()[0] == [], sql


TABLES = ("audit_log", "requests", "subjects", "state")


def reflected(book: Ledger):
    from sqlalchemy import MetaData

    meta = MetaData()
    meta.reflect(book.engine, only=TABLES)
    return meta


def dump(book: Ledger) -> dict:
    meta = reflected(book)
    with book.engine.connect() as connection:
        return {t: [dict(row._mapping) for row in connection.execute(meta.tables[t].select())] for t in TABLES}


def restore(book: Ledger, snapshot: dict) -> None:
    meta = reflected(book)
    with book.engine.begin() as connection:
        for t in TABLES:
            connection.execute(meta.tables[t].delete())
            if snapshot[t]:
                connection.execute(meta.tables[t].insert(), snapshot[t])


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_bad_requests_are_refused_and_write_nothing(ledger):
    head = ledger.verify()[1]
    bad = [
        (dict(subjects=["nobody"]), "subject 'nobody' is not in the subject map"),
        (dict(sample_ids=[N_TRAIN + N_TEST + 5]), f"sample_id {N_TRAIN + N_TEST + 5} is unknown"),
        (dict(sample_ids=[N_TRAIN + 3]), f"sample_id {N_TRAIN + 3} is a held-out (test) image"),
        (dict(sample_ids=[-1]), "sample_id -1 is negative"),
        (dict(sample_ids=["x"]), "sample_id 'x' is not an integer"),
        (dict(), "names no subject and no sample_id"),
    ]
    for kwargs, message in bad:
        with pytest.raises(UnlearnkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
            ledger.submit("test", "bad-1", **kwargs)
    with pytest.raises(UnlearnkitError, match="request id 'bad id!' is not valid"):
        ledger.submit("test", "bad id!", sample_ids=[1])
    with pytest.raises(UnlearnkitError, match="lies outside the ledger folder"):
        ledger.path("../../etc/passwd")
    assert ledger.verify() == ([], head) and statuses(ledger) == {}
    # the same id twice: recorded once; with other content: refused
    assert ledger.submit("test", "r1", sample_ids=[5]).created and not ledger.submit("test", "r1", sample_ids=[5]).created
    with pytest.raises(UnlearnkitError, match="request id r1 was already used"):
        ledger.submit("test", "r1", subjects=["person-2"])
    assert statuses(ledger) == {"r1": "pending"}


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_deadlines_overdue_requests_fail_the_check(ledger, location):
    from datetime import datetime, timezone

    long_ago = (datetime.now(timezone.utc) - timedelta(days=31)).isoformat(timespec="microseconds")
    ledger.submit("test", "late", sample_ids=[1], received=long_ago)
    ledger.submit("test", "fresh", sample_ids=[2])
    run = lambda *args: subprocess.run([sys.executable, "-m", "unlearnkit", "ledger", *args, "--ledger", location], capture_output=True, text=True)  # noqa: E731
    checked = run("check")
    assert checked.returncode == 1 and "OVERDUE request late" in checked.stdout and "fresh" not in checked.stdout
    shown = run("status")
    assert shown.returncode == 0 and "OVERDUE by 1d" in shown.stdout
    assert shown.stdout.index("late") < shown.stdout.index("fresh")  # by time left
    serve(ledger, "test", method="finetune", config={"epochs": 0.2}, rule=LENIENT)
    assert run("check").returncode == 0


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_retrain_policy_every_k_served(ledger):
    for i in range(3):
        ledger.submit("test", f"r{i}", sample_ids=[10 + i])
        serve(ledger, "test", method="finetune", config={"epochs": 0.1}, rule=LENIENT)
    assert retrain(ledger, "test", every=4).version is None  # 3 served since: not due
    done = retrain(ledger, "test", every=3)
    assert done.version is not None and "3 requests served by unlearning" in done.message
    assert ledger.train_ids(all_versions(ledger)[-1]).size == N_TRAIN - 3
    assert retrain(ledger, "test", every=3).version is None  # none served since


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_max_wait_holds_a_small_batch(ledger):
    ledger.submit("test", "r1", sample_ids=[1])
    held = serve(ledger, "test", batch=5, max_wait=timedelta(hours=1))
    assert "not due" in held.message and statuses(ledger) == {"r1": "pending"}
    assert serve(ledger, "test", batch=5, max_wait=timedelta(0), config={"epochs": 0.1}, rule=LENIENT).deployed


def serve_command(location: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "unlearnkit", "requests", "serve", "--ledger", location, "--set", "finetune.epochs=0.1",
            "--max-test-drop", "1", "--forget-margin", "1", "--attack-margin", "0.5", *extra]


def check_exactly_once(book: Ledger) -> None:
    """Every request served by exactly one finished action; every version's weights on disk as
    recorded; nothing left half-written; the chain verifies."""
    from unlearnkit.fileio import sha256_file

    with book.read() as session:
        requests = list(session.query(Request))
        done = [a for a in session.query(Action).filter(Action.status == "done")]
        assert all(r.status == "served" for r in requests), {r.id: r.status for r in requests}
        served_by = [rid for a in done for rid in a.requests]
        assert sorted(served_by) == sorted(r.id for r in requests)  # each once, none twice
        for r in requests:
            assert r.id in session.get(Action, r.action_id).requests and session.get(Action, r.action_id).status == "done"
        versions = list(session.query(ModelVersion))
        for v in versions:
            assert sha256_file(book.path(v.path)) == v.sha256
    on_disk = sorted(p.name for p in book.path("models").iterdir())
    assert on_disk == sorted(n for v in versions for n in (Path(v.path).name, Path(v.path).with_suffix(".json").name))
    assert book.verify()[0] == []


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_two_serve_processes_never_serve_a_request_twice(ledger, location):
    for i in range(4):
        ledger.submit("test", f"r{i}", sample_ids=[20 + i])
    env = {**os.environ, "UNLEARNKIT_QUIET": "1"}
    processes = [subprocess.Popen(serve_command(location, "--batch", "2"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    check_exactly_once(ledger)
    with ledger.read() as session:
        batches = [a.requests for a in session.query(Action).filter(Action.kind == "unlearn")]
    assert len(batches) == 2 and sorted(sum(batches, [])) == ["r0", "r1", "r2", "r3"]


@pytest.mark.slow
@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_kill_9_while_serving_then_restart_serves_each_request_once(ledger, location):
    """Odd trials kill at a random moment (before, during or after the serve); even trials kill
    right after the serve has claimed its batch (it says so on stderr), so that at least those
    must leave an abandoned action for the restart to recover."""
    import random
    import signal
    import time

    quiet = {**os.environ, "UNLEARNKIT_QUIET": "1"}
    ledger.submit("test", "warm-up", sample_ids=[30])
    started = time.monotonic()
    subprocess.run(serve_command(location), env=quiet, check=True, capture_output=True)
    duration = time.monotonic() - started
    rng = random.Random(0)
    claimed_kills = 0
    for trial in range(10):
        ledger.submit("test", f"t{trial}-a", sample_ids=[40 + 2 * trial])
        ledger.submit("test", f"t{trial}-b", subjects=[f"person-{trial}"])
        if trial % 2 == 0:
            verbose = {**os.environ, "UNLEARNKIT_QUIET": "0", "COLUMNS": "200"}
            process = subprocess.Popen(serve_command(location), env=verbose, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            said = ""
            while "serving action" not in said and (line := process.stderr.readline()):
                said += line
            assert "serving action" in said, said  # the batch is claimed and committed: kill now
            process.send_signal(signal.SIGKILL)
            claimed_kills += 1
        else:
            process = subprocess.Popen(serve_command(location), env=quiet, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.2, 1.1 * duration))
            if process.poll() is None:  # a serve that already finished was reaped by poll(): nothing to kill
                process.send_signal(signal.SIGKILL)
        process.wait()
        again = subprocess.run(serve_command(location), env=quiet, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        check_exactly_once(ledger)
    with ledger.read() as session:
        abandoned = session.query(Action).filter(Action.status == "abandoned").count()
    assert abandoned >= claimed_kills == 5


def load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("service_api_bench", Path(__file__).resolve().parents[1] / "bench" / "service_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_api_needs_a_token_and_refuses_bad_input_without_writing(ledger):
    from fastapi.testclient import TestClient

    from unlearnkit.service.api import create_app

    token = ledger.create_token("tester", "test")
    client = TestClient(create_app(ledger))
    endpoints = [("post", "/requests"), ("get", "/requests/x"), ("get", "/models"), ("get", "/ledger/verify"), ("get", "/"), ("get", "/reports/actions/1/report.html")]
    head = ledger.verify()[1]
    for headers in ({}, {"Authorization": "Bearer ulk_wrong"}, {"Authorization": token}):  # the last lacks "Bearer "
        for verb, path in endpoints:
            answer = getattr(client, verb)(path, headers=headers, **({"json": {"sample_ids": [1]}} if verb == "post" else {}))
            assert answer.status_code == 401 and "bearer token" in answer.json()["error"], (path, headers)
    auth = {"Authorization": f"Bearer {token}"}
    bad = [
        (dict(content=b"{not json", headers={**auth, "content-type": "application/json"}), 422, "JSON decode error"),
        (dict(json={"subjects": ["nobody"]}), 400, "subject 'nobody' is not in the subject map"),
        (dict(json={"sample_ids": [N_TRAIN + 1]}), 400, "is a held-out (test) image"),
        (dict(json={"sample_ids": [N_TRAIN + N_TEST]}), 400, f"sample_id {N_TRAIN + N_TEST} is unknown"),
        (dict(json={"sample_ids": ["x"]}), 422, "sample_ids.0: Input should be a valid integer"),
        (dict(json={"sample_ids": [1], "extra": 1}), 422, "extra: Extra inputs are not permitted"),
        (dict(json={}), 400, "names no subject and no sample_id"),
    ]
    for kwargs, code, message in bad:
        answer = client.post("/requests", **({"headers": auth} | kwargs))
        assert answer.status_code == code and message in answer.json()["error"] and "\n" not in answer.json()["error"], answer.text
    for path in ("/reports/..%2f..%2f..%2fetc%2fpasswd", "/reports/%2e%2e/%2e%2e/ledger.db", "/reports/models/x"):
        answer = client.get(path, headers=auth)
        assert answer.status_code in (400, 404) and "root:" not in answer.text, path
    assert ledger.verify() == ([], head) and statuses(ledger) == {}
    first = client.post("/requests", headers=auth, json={"request_id": "web-1", "subjects": ["person-2"]})
    assert first.status_code == 201 and first.json()["images"] == 3 and first.json()["status"] == "pending"
    again = client.post("/requests", headers=auth, json={"request_id": "web-1", "subjects": ["person-2"]})
    assert again.status_code == 200 and again.json()["created"] is False
    clash = client.post("/requests", headers=auth, json={"request_id": "web-1", "subjects": ["person-4"]})
    assert clash.status_code == 409
    shown = client.get("/requests/web-1", headers=auth).json()
    assert shown["subjects"] == ["person-2"] and shown["overdue"] is False
    assert client.get("/requests/none", headers=auth).status_code == 404
    models = client.get("/models", headers=auth).json()
    assert [(m["id"], m["kind"], m["deployed"]) for m in models] == [(1, "trained", True)]
    assert client.get("/ledger/verify", headers=auth).json()["ok"] is True
    with ledger.read() as session:  # the token is stored as its sha256 only
        from unlearnkit.service.db import Token

        assert token not in [t.sha256 for t in session.query(Token)] and all(len(t.sha256) == 64 for t in session.query(Token))


@pytest.mark.slow
@pytest.mark.parametrize("location", BACKENDS, indirect=True)
def test_a_thousand_concurrent_posts_are_each_recorded_once(ledger, location, tmp_path):
    import asyncio

    bench = load_bench()
    token = ledger.create_token("load", "test")
    process, url = bench.start_api(location)
    try:
        result = asyncio.run(bench.post_load(url, token, n=1000, concurrency=50, n_train=N_TRAIN))
    finally:
        process.terminate()
        process.wait()
    assert result["unique_ids"] == 901
    codes = {rid: [] for rid, _, _ in result["answers"]}
    for rid, code, _ in result["answers"]:
        codes[rid].append(code)
    assert all(sorted(c) in ([201], [200, 201]) for c in codes.values()), [c for c in codes.items() if sorted(c[1]) not in ([201], [200, 201])][:3]
    with ledger.read() as session:
        recorded = sorted(r.id for r in session.query(Request))
    assert recorded == sorted(codes)
    assert ledger.verify()[0] == []
    print(f"\n{'postgresql' if location.startswith('postgresql') else 'sqlite'}: 1000 POSTs at concurrency 50: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms")


@pytest.mark.parametrize("location", ["sqlite"], indirect=True)
def test_dashboard_and_batch_report_render_in_a_browser(ledger, location):
    """Served by the API: a failed batch, its retraining, an overdue request, a pending one."""
    from datetime import datetime, timezone

    from browser import browser_page, images_rendered, screenshot

    ledger.submit("test", "fails", subjects=["person-5"])
    serve(ledger, "test", method="finetune", config=WEAK)
    retrain(ledger, "test")
    ledger.submit("test", "overdue", sample_ids=[50], received=(datetime.now(timezone.utc) - timedelta(days=40)).isoformat(timespec="microseconds"))
    ledger.submit("test", "waiting", sample_ids=[51])
    token = ledger.create_token("browser", "test")
    bench = load_bench()
    process, url = bench.start_api(location)
    try:
        with browser_page() as page:
            page.goto(f"{url}/ledger/verify")
            assert "missing or wrong bearer token" in page.locator("body").inner_text()
            page.goto(f"{url}/?token={token}")
            assert page.locator("h1").inner_text() == "unlearnkit deletion requests"
            open_rows = page.locator("table").nth(1).locator("tr").all_inner_texts()[1:]
            assert [row.split("\t")[0] for row in open_rows] == ["overdue", "waiting"]  # by time left
            late = page.locator("span.overdue")
            assert late.count() == 1 and late.inner_text().startswith("OVERDUE by 10d")
            assert late.evaluate("e => getComputedStyle(e).color") == "rgb(179, 38, 30)"
            lineage = [row.split("\t")[:2] for row in page.locator("table").nth(2).locator("tr").all_inner_texts()[1:]]
            assert lineage == [["1", "trained"], ["2", "unlearned"], ["3 (deployed)", "retrained"]]
            assert "PASS verified" in page.locator("p").first.inner_text()
            screenshot(page, "dashboard")
            page.locator("a", has_text="report").first.click()  # the cookie set by ?token= carries the session
            page.wait_for_load_state()
            assert page.locator("h1").inner_text() == "Deletion batch 1: verdict FAIL"
            assert page.locator("span.fail").count() >= 2 and images_rendered(page) and min(images_rendered(page)) > 300
            screenshot(page, "batch-report")
    finally:
        process.terminate()
        process.wait()


def test_the_verdict_rule_each_check_can_fail_alone():
    from unlearnkit.service.serving import decide

    def report(test_before=0.5, test_after=0.5, forget_after=0.5, interval=(0.45, 0.55)):
        auc = {"auc": {"value": sum(interval) / 2, "ci95": list(interval)}}
        return {"before": {"test_acc": test_before}, "after": {"test_acc": test_after, "forget_acc": forget_after},
                "attacks": {"lr-loss": {"after": auc, "signal": True}}}

    rule = VerdictRule()
    assert decide(report(), 100, rule)["passed"]
    failed = lambda r, n=100: [c["check"] for c in decide(r, n, rule)["checks"] if not c["passed"]]  # noqa: E731
    assert failed(report(test_after=0.47)) == ["test accuracy kept"]
    assert failed(report(forget_after=0.7)) == ["requested images look unseen"]
    assert failed(report(forget_after=0.7), n=3) == []  # 2 of 3: the Wilson bound (21%) is not above test + 5 points
    assert failed(report(interval=(0.52, 0.6))) == ["lr-loss attack at chance"]
    assert failed(report(interval=(0.3, 0.46))) == ["lr-loss attack at chance"]  # over-forgotten: a giveaway too
    assert failed(report(interval=(0.3, 0.46)), n=100) and not [c for c in decide(report(interval=(0.3, 0.46)), 100, VerdictRule(attack_margin=0.05))["checks"] if not c["passed"]]
