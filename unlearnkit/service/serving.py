"""Serving deletion requests from the ledger: a batch of pending requests unlearned from the
deployed model in one run, audited, judged by the verdict rule, registered, and deployed only
when the verdict passes; exact retraining for the requests whose verdict failed.

One process serves a ledger at a time (the serving lease); two `serve` processes take turns and
never serve one request twice. A process killed mid-batch leaves its action `running`: the next
process to take the lease marks it abandoned, returns its requests to pending and removes its
files, so that every request is served exactly once and no model version is half-registered.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from unlearnkit.data.scenarios import class_index
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate.stats import wilson_interval
from unlearnkit.fileio import sha256_file
from unlearnkit.progress import say
from unlearnkit.service.db import Action, ModelVersion, Request, State, now, parse_time
from unlearnkit.service.ensembles import EXACT_KIND, layout_of, method_config, retrained, retrained_text, sweep, version_config
from unlearnkit.service.ledger import Ledger

LEASE_SECONDS = 120  # a lease whose heartbeat is older than this is taken over (other hosts)
HEARTBEAT_SECONDS = 15


class VerdictRule(BaseModel):
    """When an unlearned model may replace the deployed one. Without a model retrained without
    the requested images, the evidence is: the requested images look like unseen ones to the
    model and to every population attack, and the model kept its accuracy. All must hold:

    - test accuracy fell by at most `max_test_drop`;
    - accuracy on a sample of the retained training images fell by at most `max_retain_drop` (a
      method that damages what it should keep can still look fine on test images);
    - the Wilson 95% lower bound of accuracy on the requested images is at most test accuracy
      plus `forget_margin` (they are not recognised better than unseen images);
    - every population attack that could run has an AUC whose 95% interval reaches to within
      `attack_margin` of 0.5 from both sides (it cannot tell the requested images from test
      images: an interval wholly below 0.5 means they are over-forgotten, also a giveaway).
    A failed verdict sends the batch's requests to exact retraining."""

    model_config = ConfigDict(extra="forbid")
    max_test_drop: float = Field(0.02, ge=0, le=1)
    max_retain_drop: float = Field(0.02, ge=0, le=1)
    forget_margin: float = Field(0.05, ge=0, le=1)
    attack_margin: float = Field(0.0, ge=0, le=0.5)
    relearn: bool = True
    relearn_margin: float = Field(0.05, ge=0, le=1)
    backdoor_margin: float = Field(0.05, ge=0, le=1)


def decide(report: dict, images: int, rule: VerdictRule) -> dict:
    before, after = report["before"], report["after"]
    checks = [{
        "check": "test accuracy kept",
        "passed": bool(before["test_acc"] - after["test_acc"] <= rule.max_test_drop),
        "detail": f"test accuracy {100 * before['test_acc']:.1f}% → {100 * after['test_acc']:.1f}% (at most {100 * rule.max_test_drop:.1f} points lower)",
    }]
    if "retain_acc" in after:  # reports made before the retained sample was measured have none
        checks.append({
            "check": "retained images' accuracy kept",
            "passed": bool(before["retain_acc"] - after["retain_acc"] <= rule.max_retain_drop),
            "detail": f"accuracy on a sample of retained images {100 * before['retain_acc']:.1f}% → {100 * after['retain_acc']:.1f}% (at most {100 * rule.max_retain_drop:.1f} points lower)",
        })
    low = wilson_interval(round(after["forget_acc"] * images), images)[0]
    checks.append({
        "check": "requested images look unseen",
        "passed": bool(low <= after["test_acc"] + rule.forget_margin),
        "detail": f"accuracy on them {100 * after['forget_acc']:.1f}% (95% lower bound {100 * low:.1f}%) vs test {100 * after['test_acc']:.1f}% + {100 * rule.forget_margin:.1f}",
    })
    for name, attack in report["attacks"].items():
        auc = attack["after"]["auc"]
        checks.append({
            "check": f"{name} attack at chance",
            # an interval wholly below chance gives the images away too: they look *less* seen
            # than unseen ones (over-forgetting), which retraining would not do
            "passed": bool(auc["ci95"][0] <= 0.5 + rule.attack_margin and auc["ci95"][1] >= 0.5 - rule.attack_margin),
            "detail": f"AUC {auc['value']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]" + ("" if attack["signal"] else " (no signal before unlearning either)"),
        })
    if rule.relearn and (relearned := report.get("relearn")):
        low = wilson_interval(round(relearned["forget_acc"] * relearned["measured"]), relearned["measured"])[0]
        checks.append({
            "check": "requested images stay unseen after relearning",
            "passed": bool(low <= relearned["test_acc"] + rule.relearn_margin),
            "detail": (f"after {relearned['options']['steps']} fine-tuning steps on {relearned['relearned']} of them: accuracy on {relearned['measured']} others "
                       f"{100 * relearned['forget_acc']:.1f}% (95% lower bound {100 * low:.1f}%) vs test {100 * relearned['test_acc']:.1f}% + {100 * rule.relearn_margin:.1f}"),
        })
    if backdoor := report.get("backdoor"):
        after, before = backdoor["after"], backdoor["before"]
        checks.append({
            "check": "backdoor removed",
            "passed": bool(after["asr_ci95"][0] <= after["clean_rate"] + rule.backdoor_margin),
            "detail": (f"triggered test images of other classes predicted '{backdoor['target_name']}': {100 * before['asr']:.1f}% → {100 * after['asr']:.1f}% "
                       f"(95% lower bound {100 * after['asr_ci95'][0]:.1f}%) vs {100 * after['clean_rate']:.1f}% without the trigger + {100 * rule.backdoor_margin:.1f}"),
        })
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "rule": rule.model_dump()}


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_alive(holder: str, heartbeat: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            return True
        return True
    return (parse_time(now()) - parse_time(heartbeat)).total_seconds() < LEASE_SECONDS


@contextmanager
def serving_lease(ledger: Ledger, actor: str, wait: float = 600):
    """Hold the ledger's serving lease (waiting up to `wait` seconds for another holder), after
    recovering whatever a dead holder left, and keep its heartbeat until done."""
    problems, _ = ledger.verify(retention=False)
    if problems:
        raise UnlearnkitError(f"the ledger does not verify ({problems[0]}); restore it from a backup or the export before serving")
    ledger.purge(actor)  # what the policy has made due since, and a purge that a serve killed after deploying left undone
    me = holder_name()
    deadline = time.monotonic() + wait
    while True:
        try:
            with ledger.write(actor) as (session, record):
                lease = session.get(State, "serve_lease", with_for_update=True, populate_existing=True)
                current = json.loads(lease.value) if lease else None
                if current is None or current["holder"] == me or not holder_alive(current["holder"], current["heartbeat"]):
                    value = json.dumps({"holder": me, "heartbeat": now()})
                    if lease is None:
                        session.add(State(key="serve_lease", value=value))
                    else:
                        lease.value = value
                    recover(ledger, session, record)
                    break
        except IntegrityError:  # another process created the lease row at the same moment: look again
            current = {"holder": "another process"}
        if time.monotonic() > deadline:
            raise UnlearnkitError(f"another process ({current['holder']}) is serving this ledger; try again when it is done")
        time.sleep(0.5)
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_SECONDS):
            with ledger.sessions.begin() as session:
                if (lease := session.get(State, "serve_lease")) is not None and json.loads(lease.value)["holder"] == me:
                    lease.value = json.dumps({"holder": me, "heartbeat": now()})

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        thread.join()
        with ledger.sessions.begin() as session:
            if (lease := session.get(State, "serve_lease")) is not None and json.loads(lease.value)["holder"] == me:
                session.delete(lease)


def recover(ledger: Ledger, session, record) -> None:
    """Abandon every running action (its holder is gone: we hold the lease now), return its
    requests to where they were, and remove files that no version or action owns."""
    for action in session.scalars(select(Action).where(Action.status == "running")):
        action.status, action.finished = "abandoned", now()
        back = "retrain_scheduled" if action.kind == "retrain" else "pending"
        requests = list(session.scalars(select(Request).where(Request.action_id == action.id, Request.status.in_(("in_progress", "retrain_scheduled")))))
        for request in requests:
            request.status, request.action_id = back, None
        shutil.rmtree(ledger.path(f"actions/{action.id}"), ignore_errors=True)
        record("action.abandoned", {"action": action.id, "holder": action.holder, "returned": [r.id for r in requests]}, rows=[action, *requests])
    owned = {v.path for v in session.scalars(select(ModelVersion))}
    models = ledger.path("models")
    if models.is_dir():
        for path in models.iterdir():
            weights = f"models/{path.name.removesuffix('.json').removesuffix('.safetensors')}.safetensors"
            if weights not in owned:
                path.unlink(missing_ok=True)
    sweep(ledger, session)


@dataclass
class Served:
    action: int | None = None
    requests: list[str] = field(default_factory=list)
    images: int = 0
    verdict: dict | None = None
    version: int | None = None
    deployed: bool = False
    report: str | None = None
    message: str = ""
    exact: bool = False  # a deletion from a SISA ensemble: deployed whatever the verdict says


def serve(ledger: Ledger, actor: str, *, batch: int = 100, max_wait: timedelta | None = None, method: str = "finetune", config: dict | None = None,
          rule: VerdictRule | None = None, seed: int = 0, retain_sample: int = 10_000, wait: float = 600) -> Served:
    """Serve up to `batch` pending requests, oldest first. With `max_wait`, a batch smaller than
    `batch` waits until its oldest request is that old. From a deployed SISA ensemble the batch
    is deleted exactly (method sisa, whatever `method` says)."""
    from unlearnkit.methods import make_config

    rule = rule or VerdictRule()
    config = make_config(method, config)  # a bad method or config fails before anything changes
    asked = method
    with serving_lease(ledger, actor, wait):
        with ledger.write(actor) as (session, record):
            query = select(Request).where(Request.status == "pending").order_by(Request.received, Request.id).limit(batch)
            claimed = list(session.scalars(query.with_for_update(skip_locked=True)))
            if not claimed:
                return Served(message="no pending request")
            if max_wait is not None and len(claimed) < batch and parse_time(claimed[0].received) > parse_time(now()) - max_wait:
                return Served(message=f"{len(claimed)} pending, the oldest received {claimed[0].received}: not due before {batch} are pending or it is {max_wait} old")
            deployed = ledger.deployed(session)
            if deployed is None:
                raise UnlearnkitError("no model is deployed; register one with `unlearnkit ledger register MODEL --data DATA`")
            if (exact := method_config(deployed)) is not None:
                method, config = "sisa", make_config("sisa", exact)
            action = Action(kind="unlearn", status="running", holder=holder_name(), requests=[r.id for r in claimed], input_version=deployed.id,
                            method=method, config=config.model_dump(), started=now())
            session.add(action)
            session.flush()
            for request in claimed:
                request.status, request.action_id = "in_progress", action.id
            record("batch.claimed", {"action": action.id, "requests": action.requests, "model": deployed.id}, rows=[action, *claimed])
            # this batch's images, and those of requests still awaiting retraining (the deployed
            # model holds them too): the new version must be made without any of them
            forgotten = ledger.forgotten_ids(session)
        try:
            trained_on = ledger.train_ids(deployed)
            forget = np.intersect1d(forgotten, trained_on)
            if forget.size == 0:
                return _finish_noop(ledger, actor, action, claimed, deployed)
            return _unlearn_batch(ledger, actor, action, claimed, deployed, forget, trained_on, method, config, rule, seed, retain_sample, asked)
        except Exception as error:  # a kill or Ctrl-C leaves the action running instead, for `recover`
            if not _mark_failed(ledger, actor, action.id, error):
                raise
            raise UnlearnkitError(f"action {action.id} failed ({one_line(error)}); its {len(claimed)} requests are marked failed: "
                                  "`unlearnkit ledger retrain` serves them exactly") from None


def backdoor_class(name: str, classes) -> int:
    if (found := class_index(name, classes)) is not None:
        return found
    raise UnlearnkitError(f"backdoor target {name!r} is not a class of the deployed model's data ({', '.join(classes)}); "
                          "set it with `unlearnkit ledger init --backdoor-target CLASS`")


def one_line(error: BaseException, limit: int = 400) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mark_failed(ledger: Ledger, actor: str, action_id: int, error: BaseException) -> bool:
    """Record a batch that raised: its action and requests `failed` with the error, its files
    removed. False when the action is no longer this process's (taken over: not ours to mark)."""
    with ledger.write(actor) as (session, record):
        action = session.get(Action, action_id)
        if action.status != "running" or action.holder != holder_name():
            return False
        message = one_line(error)
        action.status, action.finished, action.error = "failed", now(), message
        requests = list(session.scalars(select(Request).where(Request.action_id == action.id, Request.status == "in_progress")))
        for request in requests:
            request.status, request.error = "failed", message
        shutil.rmtree(ledger.path(f"actions/{action.id}"), ignore_errors=True)
        record("batch.failed", {"action": action.id, "requests": [r.id for r in requests], "error": message}, rows=[action, *requests])
    return True


def _finish_noop(ledger, actor, action, claimed, deployed) -> Served:
    with ledger.write(actor) as (session, record):
        action = session.get(Action, action.id)
        action.kind, action.status, action.finished, action.seconds, action.output_version = "noop", "done", now(), 0.0, deployed.id
        requests = [session.get(Request, r.id) for r in claimed]
        for request in requests:
            request.status, request.served = "served", now()
        record("batch.served", {"action": action.id, "note": f"no requested image is in model version {deployed.id}: nothing to unlearn"}, rows=[action, *requests])
    return Served(action=action.id, requests=action.requests, version=deployed.id, message="nothing to unlearn: no requested image is in the deployed model")


def _unlearn_batch(ledger, actor, action, claimed, deployed, forget, trained_on, method, config, rule, seed, retain_sample, asked) -> Served:
    import dataclasses

    from unlearnkit.data import load_dataset
    from unlearnkit.data.scenarios import Scenario
    from unlearnkit.data.splits import make_split
    from unlearnkit.forget import unlearn_and_verify
    from unlearnkit.pages import batch_report
    from unlearnkit.train import Recipe, default_device

    started = time.perf_counter()
    dataset = load_dataset(deployed.data)
    if dataset.fingerprint != deployed.data_fingerprint:
        raise UnlearnkitError(f"the data at {deployed.data} is not what model version {deployed.id} was trained on (fingerprint changed); restore it")
    say(f"[bold]serving[/bold] action {action.id}: {len(claimed)} requests, {forget.size} images, model version {deployed.id}, method {method}")
    requested = Scenario("file", f"ledger-action:{action.id}", requested=tuple(int(i) for i in forget))
    split = make_split(dataset.train_y, len(dataset.test_y), forget=requested, seed=seed, data_fingerprint=dataset.fingerprint, classes=dataset.classes)
    split = dataclasses.replace(split, forget=forget, retain=np.setdiff1d(trained_on, forget), spec=f"ledger action {action.id}")
    original = ledger.load(deployed, default_device())
    recipe = Recipe(**recipe) if isinstance(recipe := ledger.recipe(deployed), dict) else Recipe()
    work = ledger.private_folder(f"actions/{action.id}")
    from unlearnkit.evaluate.relearn import RelearnOptions

    with ledger.read() as session:
        target = ledger.policy(session).get("backdoor_target")
    exact = layout_of(deployed) is not None
    result, verified = unlearn_and_verify(original, dataset, split, method=method, config=config, recipe=recipe, seed=seed, retain_sample=retain_sample,
                                          checkpoint=work / "checkpoint.safetensors", relearn=RelearnOptions() if rule.relearn else None,
                                          backdoor_target=None if target is None else backdoor_class(target, dataset.classes))
    verdict = decide(verified, int(forget.size), rule)
    shards = retrained(original.layout, forget) if exact else None
    report = {"action": action.id, "requests": action.requests, "images": int(forget.size), "input_version": deployed.id, "method": method,
              **verified, "verdict": verdict, "seconds": time.perf_counter() - started, **({"exact": exact_note(shards, original, asked)} if exact else {})}
    ledger.write_file(f"actions/{action.id}/report.json", json.dumps(report, indent=2, default=float).encode())
    ledger.write_file(f"actions/{action.id}/report.html", batch_report(report).encode())
    (work / "checkpoint.safetensors").unlink(missing_ok=True)
    relative = f"actions/{action.id}/report.html"
    made_with = version_config(result.model, dataset, ledger) | {"retrained_shards": shards} if exact else verified["config"]
    with ledger.write(actor) as (session, record):
        mine = session.get(Action, action.id)
        if mine.status != "running" or mine.holder != holder_name():
            raise UnlearnkitError(f"action {action.id} was taken over by {mine.holder} ({mine.status}); this result is dropped")
        passed = verdict["passed"]
        deploy = passed or exact  # an exact deletion needs no evidence: its verdict is recorded, not obeyed
        parent = session.get(ModelVersion, deployed.id)
        subjects = sorted({s for r in claimed for s in r.subjects} | set(parent.excluded_subjects))
        version = ledger.add_version(session, result.model, parent.spec, kind=EXACT_KIND if exact else "unlearned", parent=parent, data=parent.data,
                                      fingerprint=parent.data_fingerprint, train_ids=split.retain, method=method, config=made_with,
                                      verdict="pass" if passed else "fail", excluded_subjects=subjects, recipe=recipe.model_dump())
        session.flush()  # the version's id
        mine.status, mine.finished, mine.seconds, mine.output_version = "done", now(), report["seconds"], version.id
        mine.verdict, mine.report_path, mine.report_sha256 = verdict, relative, sha256_file(ledger.path(relative))
        rows = [mine, version]
        requests = [session.get(Request, r.id) for r in claimed]
        for request in requests:
            request.status = "served" if deploy else "retrain_scheduled"
            request.served = now() if deploy else None
        if deploy:
            rows.append(ledger.set_deployed(session, version))
        record("batch.served" if deploy else "batch.verdict_failed", {"action": action.id, "version": version.id, "verdict": passed,
                                                                      "report_sha256": mine.report_sha256,
                                                                      **({"exact": True, "retrained_shards": shards} if exact else {})}, rows=rows + requests)
    if deploy:
        ledger.purge(actor)
    if exact:
        with ledger.read() as session:
            sweep(ledger, session)
    message = (report["exact"] if exact else "served: the new version is deployed" if passed else "the verdict failed: the requests await `unlearnkit ledger retrain`")
    return Served(action=action.id, requests=action.requests, images=int(forget.size), verdict=verdict, version=version.id, deployed=deploy, report=relative,
                  message=message, exact=exact)


def exact_note(shards: list[dict], ensemble, asked: str) -> str:
    """What the served message and the report say of an exact deletion."""
    instead = f" (not {asked}: the deployed model is a SISA ensemble)" if asked != "sisa" else ""
    return (f"served exactly by sisa{instead}: {retrained_text(shards, len(ensemble.layout))} without the requested images, each bitwise the shard "
            "trained without them; the new version is deployed whatever the approximate checks say (exact by construction)")


@dataclass
class Retrained:
    action: int | None = None
    requests: list[str] = field(default_factory=list)
    version: int | None = None
    test_acc: float | None = None
    message: str = ""
    shards: list[dict] | None = None  # a SISA ensemble: the shards retrained, each from which slice (from 0)


def retrain_due(ledger: Ledger, session, every: int | None, above: float | None) -> str | None:
    scheduled = ledger.requests(session, ("retrain_scheduled", "failed"))
    if scheduled:
        return f"{len(scheduled)} requests await retraining"
    last = session.scalar(select(Action.started).where(Action.kind == "retrain", Action.status == "done").order_by(Action.id.desc()).limit(1))
    if every:
        since = [r for r in session.scalars(select(Request).where(Request.status == "served")) if last is None or (r.served or "") > last]
        if len(since) >= every:
            return f"{len(since)} requests served by unlearning since the last retraining (policy: every {every})"
    if above is not None:
        info = ledger.dataset_info(session)
        fraction = ledger.forgotten_ids(session).size / max(1, info["n_train"] if info else 1)
        if fraction > above:
            return f"{100 * fraction:.2f}% of the training set forgotten (policy: above {100 * above:.2f}%)"
    return None


def retrain(ledger: Ledger, actor: str, *, every: int | None = None, above: float | None = None, seed: int = 0, wait: float = 600) -> Retrained:
    """Train from scratch, with the original's recipe and architecture, on every image of the
    original training set not forgotten so far; deploy it and close the requests that awaited it.
    A deployed SISA ensemble has those images deleted exactly instead: only the shards that held
    one retrain, each from the slice that first held one."""
    from unlearnkit.data import load_dataset
    from unlearnkit.train import Recipe, accuracy

    with serving_lease(ledger, actor, wait):
        with ledger.write(actor) as (session, record):
            reason = retrain_due(ledger, session, every, above)
            if reason is None:
                return Retrained(message="retraining is not due")
            deployed = ledger.deployed(session)
            scheduled = ledger.requests(session, ("retrain_scheduled", "failed"))
            exact = layout_of(deployed) is not None
            if exact and not scheduled:
                return Retrained(message=f"retraining is not needed ({reason}): the deployed model is a SISA ensemble, and each deletion from it was exact")
            root = deployed
            while root.kind == "unlearned":
                root = session.get(ModelVersion, root.parent_id)
            action = Action(kind="retrain", status="running", holder=holder_name(), requests=[r.id for r in scheduled], input_version=deployed.id,
                            method="sisa" if exact else None, config={"reason": reason, "seed": seed, "root_version": root.id}, started=now())
            session.add(action)
            session.flush()
            for request in scheduled:
                request.action_id = action.id
            record("retrain.started", {"action": action.id, "reason": reason, "root": root.id}, rows=[action, *scheduled])
            # the deployed version's files, not the root's: the root may be purged, and each
            # version since was made from its parent's images less the forgotten ones
            trained_on, forgotten = ledger.train_ids(deployed), ledger.forgotten_ids(session)
            keep = np.setdiff1d(trained_on, forgotten)
        started = time.perf_counter()
        dataset = load_dataset(deployed.data)
        recipe = Recipe(**recipe) if isinstance(recipe := ledger.recipe(deployed), dict) else Recipe()
        shards = None
        if exact:
            doomed = np.intersect1d(trained_on, forgotten)
            if doomed.size == 0:
                return _close_retraining(ledger, actor, action.id, deployed.id, reason)
            model, shards = _delete_exactly(ledger, deployed, dataset, doomed)
            made_with = version_config(model, dataset, ledger) | {"retrained_shards": shards}
        else:
            model, made_with = _train_from_scratch(deployed.spec, dataset, keep, recipe, seed, action.id, reason), {"seed": seed}
        test_acc = accuracy(model, dataset.test_x, dataset.test_y, precision="fp32")
        detail = f"test accuracy {100 * test_acc:.1f}%" + (f"; {retrained_text(shards, len(model.layout))}" if exact else "")
        with ledger.write(actor) as (session, record):
            mine = session.get(Action, action.id)
            if mine.status != "running" or mine.holder != holder_name():
                raise UnlearnkitError(f"action {action.id} was taken over by {mine.holder}; this result is dropped")
            parent = session.get(ModelVersion, deployed.id)
            subjects = sorted({s for r in session.scalars(select(Request).where(Request.status.in_(("served", "retrain_scheduled", "failed")))) for s in r.subjects})
            version = ledger.add_version(session, model, deployed.spec, kind="retrained", parent=parent, data=root.data, fingerprint=root.data_fingerprint,
                                          train_ids=keep, method="sisa" if exact else None, config=made_with, verdict="pass", excluded_subjects=subjects,
                                          recipe=recipe.model_dump())
            session.flush()
            mine.status, mine.finished, mine.seconds, mine.output_version = "done", now(), time.perf_counter() - started, version.id
            mine.verdict = {"passed": True, "checks": [{"check": "exact deletion (SISA)" if exact else "exact retraining", "passed": True, "detail": detail}]}
            if exact:
                mine.config = {**mine.config, "retrained_shards": shards}
            requests = list(session.scalars(select(Request).where(Request.action_id == action.id, Request.status.in_(("retrain_scheduled", "failed")))))
            for request in requests:
                request.status, request.served = "served", now()
            record("retrain.served", {"action": action.id, "version": version.id, "images": int(keep.size), "test_acc": test_acc,
                                      **({"retrained_shards": shards} if exact else {})},
                   rows=[mine, version, ledger.set_deployed(session, version), *requests])
        ledger.purge(actor)
        if exact:
            with ledger.read() as session:
                sweep(ledger, session)
    message = f"retrained: {reason}" + (f"; deleted exactly from the SISA ensemble, {retrained_text(shards, len(model.layout))}" if exact else "")
    return Retrained(action=action.id, requests=[r.id for r in requests], version=version.id, test_acc=test_acc, message=message, shards=shards)


def _train_from_scratch(spec: dict, dataset, keep: np.ndarray, recipe, seed: int, action: int, reason: str):
    from unlearnkit.store import build_model
    from unlearnkit.train import Source, default_device, fit

    device = default_device()
    model = build_model(spec).to(device)
    say(f"[bold]retraining[/bold] from scratch on {keep.size} images (action {action}: {reason})")
    fit(model, Source.take(dataset.train_x, dataset.train_y, keep, device), recipe, seed=seed, description="retrain")
    return model


def _delete_exactly(ledger: Ledger, deployed: ModelVersion, dataset, doomed: np.ndarray):
    """The deployed ensemble without `doomed`, and which shards were retrained from which slice."""
    from unlearnkit.service.ensembles import training_images
    from unlearnkit.sisa import delete
    from unlearnkit.train import default_device

    ensemble = ledger.load(deployed, default_device())
    shards = retrained(ensemble.layout, doomed)
    say(f"[bold]deleting exactly[/bold] {doomed.size} images from the SISA ensemble of model version {deployed.id}: {retrained_text(shards, len(ensemble.layout))}")
    delete(ensemble, doomed, training_images(ledger, dataset))
    return ensemble, shards


def _close_retraining(ledger: Ledger, actor: str, action_id: int, version_id: int, reason: str) -> Retrained:
    """Close the requests that awaited retraining when none of their images is in the deployed
    ensemble: it is already the model without them."""
    note = f"none of their images is in the deployed SISA ensemble (model version {version_id}): nothing to delete"
    with ledger.write(actor) as (session, record):
        mine = session.get(Action, action_id)
        mine.status, mine.finished, mine.seconds, mine.output_version = "done", now(), 0.0, version_id
        requests = list(session.scalars(select(Request).where(Request.action_id == action_id, Request.status.in_(("retrain_scheduled", "failed")))))
        for request in requests:
            request.status, request.served = "served", now()
        record("retrain.served", {"action": action_id, "version": version_id, "note": note}, rows=[mine, *requests])
    return Retrained(action=action_id, requests=[r.id for r in requests], version=version_id, message=f"retrained: {reason}; {note}")
