"""`unlearnkit ledger …`, `unlearnkit requests …` and `unlearnkit serve-api`."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from unlearnkit.cli_values import parse_json_object
from unlearnkit.errors import UnlearnkitError

ledger_app = typer.Typer(no_args_is_help=True, help="The ledger of model versions, subjects, deletion requests and the audit chain.")
requests_app = typer.Typer(no_args_is_help=True, help="Submit and serve deletion requests recorded in the ledger.")
token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens for the HTTP API.")
ledger_app.add_typer(token_app, name="token")
out = Console(soft_wrap=True)

LEDGER_HELP = "the ledger: a SQLite file, or postgresql://USER@HOST/DB (default: $UNLEARNKIT_LEDGER, then the cache's ledger/ledger.db)"
LEDGER = typer.Option(None, "--ledger", help=LEDGER_HELP)


def opened(location: Optional[str], create: bool = False):
    from unlearnkit.service.ledger import Ledger

    return Ledger.open(location, create=create)


def actor() -> str:
    from unlearnkit.service.ledger import cli_actor

    return cli_actor()


@ledger_app.command("init")
def init(
    ledger: Optional[str] = LEDGER,
    deadline_days: Optional[int] = typer.Option(None, min=1, max=3650, help="days from receipt to each request's deadline (new ledger: 30, GDPR's one month)"),
    keep_superseded: Optional[int] = typer.Option(None, min=0, max=3650, help="days a superseded version that held a deleted image is kept after the deletion is served, then purged (new ledger: 0)"),
    backdoor_target: Optional[str] = typer.Option(None, help="check every served batch for a backdoor into this class (name or index; none: no check)"),
):
    """Create the ledger (or bring its schema up to date). Run again, it changes only the policy
    values given."""
    book = opened(ledger, create=True)
    policy = book.set_policy(actor(), deadline_days=deadline_days, keep_superseded_days=keep_superseded, backdoor_target=backdoor_target)
    out.print(f"ledger ready: {book.location} (files in {book.folder}); deadlines {policy['deadline_days']} days after receipt; "
              f"superseded versions with deleted data kept {policy['keep_superseded_days']} days"
              + (f"; backdoor check into class {policy['backdoor_target']}" if "backdoor_target" in policy else ""), markup=False)


@ledger_app.command("subjects")
def subjects(file: str = typer.Argument(..., help="CSV with subject_id,sample_id"), ledger: Optional[str] = LEDGER):
    """Import a subject map: which training images belong to whom."""
    added = opened(ledger).import_subjects(file, actor())
    out.print(f"imported {escape(file)}: {added} new subject-image pairs")


@ledger_app.command("register")
def register(
    model: str = typer.Argument(..., help="the trained model: .safetensors with its unlearnkit sidecar (a model or a SISA ensemble), or any weights with --model-factory"),
    data: Optional[str] = typer.Option(None, help="the data it was trained on (see `unlearnkit data info`)"),
    train_ids: Optional[str] = typer.Option(None, help="CSV with a sample_id column: the training images it saw (default: the whole training set)"),
    model_factory: Optional[str] = typer.Option(None, help="package.module:function that builds the architecture"),
    model_kwargs: Optional[str] = typer.Option(None, help="--model-factory's keyword arguments as a JSON object"),
    deploy: bool = typer.Option(True, help="make it the deployed version"),
    cache: Optional[str] = typer.Option(None, help="a SISA ensemble: the model store holding its slice checkpoints, copied into the ledger (default: $UNLEARNKIT_CACHE/store, where `unlearnkit train` keeps them)"),
    ledger: Optional[str] = LEDGER,
):
    """Record a trained model version (and deploy it)."""
    from unlearnkit.service.ensembles import layout_of

    kwargs = parse_json_object(model_kwargs, "--model-kwargs") if model_kwargs else None
    version = opened(ledger).register_model(model, data, actor(), train_ids, model_factory, kwargs, deploy, sisa_store=cache)
    sisa = layout_of(version)
    ensemble = f", a SISA ensemble of {sisa['shards']} shards × {sisa['slices']} slices, {len(sisa['checkpoints'])} slice checkpoints copied" if sisa else ""
    out.print(f"model version {version.id} (sha256 {version.sha256[:16]}…, {version.train_count} training images{ensemble}){' deployed' if deploy else ''}")


def status_table(view: dict) -> Table:
    table = Table(title="open requests by time left", title_justify="left")
    for column in ("request", "status", "received (UTC)", "time left", "images"):
        table.add_column(column)
    for r in view["open"]:
        left = f"[bold red]OVERDUE by {r['left']}[/bold red]" if r["overdue"] else r["left"]
        table.add_row(r["id"], r["status"], r["received"][:19].replace("T", " "), left, str(r["images"]))
    return table


@ledger_app.command("status")
def status(ledger: Optional[str] = LEDGER):
    """Requests by status, the open ones by time left (overdue in red), the deployed version."""
    from unlearnkit.service.ledger import overview

    view = overview(opened(ledger))
    out.print("requests: " + ", ".join(f"{count} {state}" for state, count in sorted(view["counts"].items())) if view["counts"] else "no request yet")
    out.print(status_table(view))
    deployed = [v for v in view["versions"] if v["deployed"]]
    if deployed:
        v = deployed[0]
        out.print(f"deployed: model version {v['id']} ({v['kind']}{', ' + v['method'] if v['method'] else ''}), {v['train_count']} training images")


@ledger_app.command("check")
def check(ledger: Optional[str] = LEDGER):
    """For a cron job: exit 1 when a request is overdue (or the audit chain does not verify)."""
    from unlearnkit.service.ledger import overview

    view = overview(opened(ledger))
    overdue = [r for r in view["open"] if r["overdue"]]
    for r in overdue:
        out.print(f"[bold red]OVERDUE[/bold red] request {r['id']} ({r['status']}): deadline {r['deadline'][:19]} passed {r['left']} ago")
    for problem in view["chain"]["problems"][:1]:
        out.print(f"[bold red]AUDIT CHAIN[/bold red] {escape(problem)}")
    if overdue or view["chain"]["problems"]:
        raise typer.Exit(1)
    out.print(f"ok: {len(view['open'])} open requests, none overdue; the audit chain verifies")


@ledger_app.command("verify")
def verify(ledger: Optional[str] = LEDGER):
    """Check the audit chain and every row and report against it; name the first bad one."""
    problems, head = opened(ledger).verify()
    if problems:
        out.print(f"[bold red]FAILED[/bold red]: {escape(problems[0])}" + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
        for problem in problems[1:10]:
            out.print(f"  also: {problem}", markup=False)
        raise typer.Exit(1)
    out.print(f"verified: {head[0]} audit entries, every row and report matches; head hash {head[1]}")


@ledger_app.command("export")
def export(folder: str = typer.Argument(..., help="output folder"), ledger: Optional[str] = LEDGER):
    """Write the audit chain, its verification and every report, for an auditor."""
    path = opened(ledger).export(folder)
    out.print(f"wrote {path}/audit-chain.jsonl, verify.json and the reports", markup=False)


@ledger_app.command("retrain")
def retrain(
    every: Optional[int] = typer.Option(None, min=1, help="policy: also retrain once this many requests were served by unlearning since the last retraining"),
    above: Optional[float] = typer.Option(None, min=0, max=1, help="policy: also retrain once this fraction of the training set is forgotten"),
    seed: int = typer.Option(0, help="training seed"),
    ledger: Optional[str] = LEDGER,
):
    """Train from scratch on every image not forgotten so far, when due; deploy it and close the
    requests that awaited it."""
    from unlearnkit.service.serving import retrain as run_retrain

    done = run_retrain(opened(ledger), actor(), every=every, above=above, seed=seed)
    if done.version is None:
        out.print(done.message)
        return
    accuracy = "" if done.test_acc is None else f" (test accuracy {100 * done.test_acc:.1f}%)"
    out.print(f"{done.message}; model version {done.version} deployed{accuracy}; served {len(done.requests)} requests: {', '.join(done.requests)}", markup=False)


@ledger_app.command("dashboard")
def dashboard(file: str = typer.Argument("dashboard.html", help="output HTML file"), ledger: Optional[str] = LEDGER):
    """Write the dashboard as one self-contained HTML file."""
    from unlearnkit.fileio import atomic_write_bytes
    from unlearnkit.pages import dashboard as render
    from unlearnkit.service.ledger import overview

    atomic_write_bytes(Path(file), render(overview(opened(ledger))).encode())
    out.print(f"wrote {file}", markup=False)


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="who or what will use it"),
    scope: str = typer.Option("read", help="submit (submit requests, see its own), read (see everything, change nothing) or admin (both)"),
    ledger: Optional[str] = LEDGER,
):
    """Create a bearer token; it is printed once and stored only as its sha256."""
    token = opened(ledger).create_token(name, actor(), scope)
    typer.echo(token)


@token_app.command("list")
def token_list(ledger: Optional[str] = LEDGER):
    """Every token: id, name, scope, when created, whether revoked (never the token itself)."""
    table = Table(title="API tokens", title_justify="left")
    for column in ("id", "name", "scope", "created (UTC)", "revoked"):
        table.add_column(column)
    for t in opened(ledger).tokens():
        table.add_row(str(t["id"]), escape(t["name"]), t["scope"], t["created"][:19].replace("T", " "), "yes" if t["revoked"] else "")
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="the token's id (`unlearnkit ledger token list`)"), ledger: Optional[str] = LEDGER):
    """Revoke a token, recorded in the audit chain; it stops working at once."""
    opened(ledger).revoke_token(token_id, actor())
    out.print(f"token {token_id} revoked")


@ledger_app.command("purge")
def purge(ledger: Optional[str] = LEDGER):
    """Delete the files of every superseded version that held a deleted image once the policy's
    grace period has passed (serving does this itself; run it from cron when the grace is > 0)."""
    purged = opened(ledger).purge(actor())
    out.print(f"purged model versions {', '.join(map(str, purged))}" if purged else "nothing to purge")


@requests_app.command("submit")
def submit(
    request_id: Optional[str] = typer.Option(None, "--id", help="your request id (submitting the same id again is a no-op; default: a new one)"),
    subject: Optional[list[str]] = typer.Option(None, help="a subject whose images to forget (repeatable)"),
    sample_id: Optional[list[int]] = typer.Option(None, help="a training image to forget (repeatable)"),
    ledger: Optional[str] = LEDGER,
):
    """Record a deletion request."""
    done = opened(ledger).submit(actor(), request_id, subject or [], sample_id or [])
    r = done.request
    out.print(f"request {r.id}: {len(r.sample_ids)} images, deadline {r.deadline[:19]} UTC" + ("" if done.created else " (already recorded)"))


def parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match:
        raise UnlearnkitError(f"--max-wait '{text}' is not a duration; give e.g. 90s, 30m, 12h or 2d")
    return timedelta(seconds=float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]])


@requests_app.command("serve")
def serve(
    batch: int = typer.Option(100, min=1, help="serve up to this many pending requests, oldest first, in one unlearning run"),
    max_wait: Optional[str] = typer.Option(None, help="serve a smaller batch only once its oldest request is this old (90s, 30m, 12h, 2d)"),
    method: str = typer.Option("finetune", help="unlearning method (see `unlearnkit methods`); a deployed SISA ensemble is always served exactly by sisa"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override a hyperparameter of the method: METHOD.FIELD=VALUE (repeatable)"),
    max_test_drop: float = typer.Option(0.02, help="verdict: largest allowed fall in test accuracy"),
    max_retain_drop: float = typer.Option(0.02, help="verdict: largest allowed fall in accuracy on a sample of retained images"),
    forget_margin: float = typer.Option(0.05, help="verdict: how far above test accuracy the requested images' accuracy (95% lower bound) may be"),
    attack_margin: float = typer.Option(0.0, help="verdict: how far from 0.5 (either side) an attack's AUC interval may lie"),
    relearn: bool = typer.Option(True, help="verdict: run the relearning attack (10 fine-tuning steps on a part of the requested images)"),
    relearn_margin: float = typer.Option(0.05, help="verdict: how far above test accuracy the rest of them (95% lower bound) may be after relearning"),
    seed: int = typer.Option(0, help="seed of the method and of the evaluation samples"),
    wait: float = typer.Option(600, help="seconds to wait for another serving process to finish"),
    ledger: Optional[str] = LEDGER,
):
    """Unlearn a batch of pending requests from the deployed model, audit it, and deploy the
    result when the verdict passes (otherwise the requests await `ledger retrain`)."""
    from unlearnkit.methods import parse_overrides
    from unlearnkit.service.serving import VerdictRule, serve as run_serve

    rule = VerdictRule(max_test_drop=max_test_drop, max_retain_drop=max_retain_drop, forget_margin=forget_margin, attack_margin=attack_margin,
                       relearn=relearn, relearn_margin=relearn_margin)
    config = parse_overrides(set_, [method]).get(method)
    done = run_serve(opened(ledger), actor(), batch=batch, max_wait=parse_duration(max_wait) if max_wait else None, method=method, config=config,
                     rule=rule, seed=seed, wait=wait)
    if done.verdict is None:
        out.print(done.message)
        return
    for c in done.verdict["checks"]:
        out.print(f"  {'[green]pass[/green]' if c['passed'] else '[red]FAIL[/red]'}  {c['check']}: {c['detail']}")
    out.print(f"action {done.action}: {len(done.requests)} requests, {done.images} images → model version {done.version}; verdict "
              + ("[green]PASS[/green]" if done.verdict["passed"] else "[red]FAIL[/red]") + f"; {done.message}; report {done.report}")


@requests_app.command("show")
def show(request_id: str = typer.Argument(...), ledger: Optional[str] = LEDGER):
    """One request as JSON."""
    from unlearnkit.service.api import request_json
    from unlearnkit.service.db import Request

    with opened(ledger).read() as session:
        found = session.get(Request, request_id)
        if found is None:
            raise UnlearnkitError(f"request {request_id} is not in the ledger")
        typer.echo(json.dumps(request_json(found), indent=2))


def serve_api(host: str = typer.Option("127.0.0.1", help="address to listen on (127.0.0.1: this machine only)"),
              port: int = typer.Option(8000, help="port"), ledger: Optional[str] = LEDGER):
    """Serve the HTTP API and the dashboard (needs unlearnkit[service])."""
    import uvicorn

    from unlearnkit.service.api import create_app

    uvicorn.run(create_app(opened(ledger)), host=host, port=port, log_level="warning")
