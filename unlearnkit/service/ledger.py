"""The ledger: which model versions hold whose data, every deletion request and what served it.

    ledger = Ledger.open("runs/ledger.db", create=True)   # or "postgresql://user@host/db"
    ledger.import_subjects("subjects.csv")
    ledger.register_model("model.safetensors", data="../shared/data/cifar10")
    ledger.submit("req-1", subjects=["alice"])
    problems, head = ledger.verify()

Every change is one transaction that appends its audit entry (`chain.append`); a bad input
raises `UnlearnkitError` before anything is written.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.orm import Session

from unlearnkit.data.scenarios import class_index, read_csv_rows, training_sample_id
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes, sha256_file
from unlearnkit.service import chain
from unlearnkit.service.db import (
    FILE_MODE, FOLDER_MODE,
    HEAD_REVISION, Action, LogEntry, ModelVersion, Request, State, Subject, Token, default_location, files_folder, make_engine, migrate, now,
    parse_time, sessions,
)

DEFAULT_DEADLINE_DAYS = 30  # GDPR Art. 12(3): without undue delay, within one month
MAX_POLICY_DAYS = 3650
DEFAULT_KEEP_SUPERSEDED_DAYS = 0  # a superseded version that held a deleted image is purged at once
OPEN = ("pending", "in_progress", "retrain_scheduled", "failed")  # failed: its batch raised; `ledger retrain` serves it exactly
SCOPES = ("submit", "read", "admin")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)


def ignore_missing(function, path, error) -> None:
    """shutil.rmtree's error handler: a file another process deleted first is gone, as wanted."""
    if not issubclass(error[0], FileNotFoundError):
        raise error[1]


def quoted(value, limit: int = 80) -> str:
    """`repr(value)`, cut to about `limit` characters: an error never echoes a huge input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def database_problem(location: str, error: DatabaseError) -> UnlearnkitError:
    """One line for a database that cannot be used: not a database, read-only, locked, gone."""
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    advice = ("give this account write access to it and its folder" if "readonly" in reason or "read-only" in reason
              else "wait for the other process or stop it" if "locked" in reason
              else "check the path or URL; `unlearnkit ledger init --ledger LOCATION` creates a ledger")
    return UnlearnkitError(f"ledger {_redacted(location)} cannot be used: {reason}; {advice}")


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


@dataclass
class Submitted:
    request: Request
    created: bool  # False: the same request id was submitted before (idempotent)


class Ledger:
    def __init__(self, location: str, engine, folder: Path):
        self.location, self.engine, self.folder = location, engine, folder
        self.sessions = sessions(engine)
        self.readers = sessions(engine, read_only=True)

    @classmethod
    def open(cls, location: str | None = None, create: bool = False) -> "Ledger":
        location = str(location or default_location())
        folder = files_folder(location)
        is_file = "://" not in location
        if is_file and not create and not Path(location).expanduser().is_file():
            raise UnlearnkitError(f"ledger {location} does not exist; create it with `unlearnkit ledger init --ledger {location}`")
        if is_file:
            database = Path(location).expanduser()
            database.parent.mkdir(parents=True, exist_ok=True)
            if create and not database.exists():
                os.close(os.open(database, os.O_CREAT | os.O_WRONLY, FILE_MODE))  # SQLite gives its -wal and -shm files this mode too
        engine = make_engine(location)
        try:
            if create:
                migrate(engine)
            elif "audit_log" not in _tables(engine):
                raise UnlearnkitError(f"ledger {location} has no ledger tables; create it with `unlearnkit ledger init --ledger {location}`")
            elif _revision(engine) != HEAD_REVISION:
                migrate(engine)  # a ledger made before token scopes and purging: its rows keep their digests
        except DatabaseError as error:
            raise database_problem(location, error) from None
        ledger = cls(location, engine, folder)
        if create:
            for sub in ("", "models", "train-ids", "actions"):
                ledger.private_folder(sub)
            with ledger.write(cli_actor()) as (session, record):
                if chain.head(session)[0] == 0:
                    policy = State(key="policy", value=json.dumps({"deadline_days": DEFAULT_DEADLINE_DAYS, "keep_superseded_days": DEFAULT_KEEP_SUPERSEDED_DAYS}))
                    session.add(policy)
                    record("ledger.created", {"location": _redacted(location)}, rows=[policy])
        return ledger

    @contextmanager
    def write(self, actor: str):
        """A transaction and the function that appends its audit entries."""
        try:
            with self.sessions.begin() as session:
                yield session, lambda event, payload, rows=(), subjects=False: chain.append(session, actor, event, payload, rows, subjects)
        except IntegrityError:
            raise
        except DatabaseError as error:
            raise database_problem(self.location, error) from None

    @contextmanager
    def read(self):
        """A session that only reads (on SQLite it does not take the write lock)."""
        try:
            with self.readers() as session:
                yield session
        except DatabaseError as error:
            raise database_problem(self.location, error) from None

    # ---- state -------------------------------------------------------------------------------
    def policy(self, session: Session) -> dict:
        found = session.get(State, "policy")
        policy = {"deadline_days": DEFAULT_DEADLINE_DAYS, "keep_superseded_days": DEFAULT_KEEP_SUPERSEDED_DAYS}
        return policy | (json.loads(found.value) if found else {})

    def set_policy(self, actor: str, deadline_days: int | None = None, keep_superseded_days: int | None = None, backdoor_target: str | None = None) -> dict:
        """Change the named parts of the policy (the others stay as they are), recorded in the
        chain. `backdoor_target`: the class a backdoor check measures on every served batch (a
        class name or index; "none" turns the check off)."""
        if backdoor_target is not None and (not isinstance(backdoor_target, str) or not 1 <= len(backdoor_target) <= 100):
            raise UnlearnkitError(f"backdoor target {quoted(backdoor_target)} must be a class name or index, or none")
        for name, value, low in (("deadline_days", deadline_days, 1), ("keep_superseded_days", keep_superseded_days, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_POLICY_DAYS):
                raise UnlearnkitError(f"{name.replace('_', '-')} {quoted(value)} is out of range; give a whole number of days from {low} to {MAX_POLICY_DAYS}")
        with self.write(actor) as (session, record):
            policy = self.policy(session)
            wanted = policy | {k: v for k, v in (("deadline_days", deadline_days), ("keep_superseded_days", keep_superseded_days)) if v is not None}
            if backdoor_target is not None:
                info = self.dataset_info(session)
                if backdoor_target != "none" and info and class_index(backdoor_target, info["classes"]) is None:
                    raise UnlearnkitError(f"backdoor target {quoted(backdoor_target)} is not a class of the registered data ({', '.join(info['classes'])})")
                wanted = {k: v for k, v in wanted.items() if k != "backdoor_target"} | ({} if backdoor_target == "none" else {"backdoor_target": backdoor_target})
            if wanted != policy or session.get(State, "policy") is None:
                state = session.get(State, "policy") or State(key="policy", value="")
                state.value = json.dumps(wanted)
                session.add(state)
                record("policy.changed", wanted, rows=[state])
        return wanted

    def dataset_info(self, session: Session) -> dict | None:
        found = session.get(State, "dataset")
        return json.loads(found.value) if found else None

    def deployed(self, session: Session) -> ModelVersion | None:
        found = session.get(State, "deployed")
        return session.get(ModelVersion, int(found.value)) if found else None

    def set_deployed(self, session: Session, version: ModelVersion) -> State:
        if (state := session.get(State, "deployed")) is None:
            state = State(key="deployed", value=str(version.id))
            session.add(state)
        else:
            state.value = str(version.id)
        return state

    def path(self, relative: str) -> Path:
        """A file the ledger points to; refuses a path that leaves the ledger's folder."""
        target = (self.folder / relative).resolve()
        if not target.is_relative_to(self.folder.resolve()):
            raise UnlearnkitError(f"path {quoted(relative)} lies outside the ledger folder {self.folder}; the ledger only reads its own files")
        return target

    def private_folder(self, relative: str) -> Path:
        """A folder of the ledger, made (with its parents inside the ledger) readable by its owner only."""
        target = self.path(relative)
        for folder in [*reversed(target.relative_to(self.folder.resolve()).parents), target.relative_to(self.folder.resolve())]:
            path = self.folder.resolve() / folder
            path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            os.chmod(path, FOLDER_MODE)
        return target

    def write_file(self, relative: str, data: bytes) -> Path:
        """Write a file of the ledger atomically, readable by its owner only."""
        target = self.path(relative)
        self.private_folder(str(target.parent.relative_to(self.folder.resolve())))
        return atomic_write_bytes(target, data, mode=FILE_MODE)

    def train_ids(self, version: ModelVersion) -> np.ndarray:
        path = self.path(version.train_ids_path)
        if sha256_file(path) != version.train_ids_sha256:
            raise UnlearnkitError(f"{path} does not match the sha256 the ledger recorded for model version {version.id}; the file was changed")
        return np.load(path)

    def save_train_ids(self, ids: np.ndarray) -> tuple[str, str]:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        relative = f"train-ids/{hashlib.sha256(ids.tobytes()).hexdigest()}.npy"
        buffer = io.BytesIO()
        np.save(buffer, ids)
        self.write_file(relative, buffer.getvalue())
        return relative, sha256_file(self.path(relative))

    def forgotten_ids(self, session: Session) -> np.ndarray:
        """Every image of every request that was served or awaits retraining: none may be in a
        model made from now on."""
        rows = session.scalars(select(Request.sample_ids).where(Request.status.in_(("served", "retrain_scheduled", "in_progress", "failed")))).all()
        return np.unique(np.concatenate([np.asarray(ids, dtype=np.int64) for ids in rows])) if rows else np.zeros(0, np.int64)

    # ---- subjects and models ------------------------------------------------------------------
    def import_subjects(self, csv_path: str | Path, actor: str) -> int:
        pairs = read_subject_map(csv_path)
        with self.write(actor) as (session, record):
            info = self.dataset_info(session)
            for subject, sample in pairs:
                check_sample_id(sample, info, f"{csv_path}: subject '{subject}'")
            known = set(session.execute(select(Subject.subject_id, Subject.sample_id)).all())
            new = [Subject(subject_id=s, sample_id=i) for s, i in pairs if (s, i) not in known]
            session.add_all(new)
            record("subjects.imported", {"file": str(csv_path), "file_sha256": sha256_file(csv_path), "pairs": len(pairs), "new": len(new)}, subjects=True)
        return len(new)

    def register_model(self, weights: str | Path, data: str | None, actor: str, train_ids_csv: str | Path | None = None,
                       factory: str | None = None, factory_kwargs: dict | None = None, deploy: bool = True,
                       sisa_store: str | Path | None = None) -> ModelVersion:
        """Record a trained model: its weights (copied into the ledger folder), architecture,
        data and the training images it saw (all of the data's training set by default). A SISA
        ensemble's slice checkpoints are copied too, from `sisa_store` (default: the cache's)."""
        from unlearnkit.data import load_dataset, resolve_data_path
        from unlearnkit.service.ensembles import is_ensemble_file
        from unlearnkit.store import load_model, model_spec, read_sidecar, sidecar_path

        weights = Path(weights)
        if is_ensemble_file(weights):
            return self.register_ensemble(weights, data, actor, train_ids_csv, deploy, sisa_store)
        model = load_model(weights, factory=factory, factory_kwargs=factory_kwargs)  # verifies against the sidecar
        side = read_sidecar(weights) if sidecar_path(weights).is_file() else {}
        spec = side["model"] if side else model_spec(model, factory, factory_kwargs)
        data_path = str(resolve_data_path(data)[0].resolve())
        dataset = load_dataset(data)
        n_train = len(dataset.train_y)
        ids = read_id_list(train_ids_csv, n_train) if train_ids_csv else np.arange(n_train)
        if isinstance(side.get("trained_on"), int) and side["trained_on"] != ids.size:
            raise UnlearnkitError(f"{weights} was trained on {side['trained_on']} images but {ids.size} are given as its training set; "
                                  "give the images it saw with --train-ids (`unlearnkit train --write-train-ids` writes them)")
        return self._record_trained(actor, model, spec, weights, data_path, dataset, ids, side.get("recipe"), deploy)

    def register_ensemble(self, weights: Path, data: str | None, actor: str, train_ids_csv: str | Path | None, deploy: bool,
                          sisa_store: str | Path | None) -> ModelVersion:
        """A saved SISA ensemble: its training ids are the union of its shards', and the slice
        checkpoints a deletion restarts from are copied into the ledger's own store."""
        from unlearnkit.data import load_dataset, resolve_data_path
        from unlearnkit.service.ensembles import import_checkpoints, version_config
        from unlearnkit.sisa import load_ensemble
        from unlearnkit.store import Store

        source = Store(sisa_store) if sisa_store else Store()
        ensemble = load_ensemble(weights, store=source)
        data_path = str(resolve_data_path(data)[0].resolve())
        dataset = load_dataset(data)
        ids = ensemble.ids
        if ids.max() >= len(dataset.train_y):
            raise UnlearnkitError(f"SISA ensemble {weights} was trained on sample_id {int(ids.max())}, not a training image of {data_path} ({len(dataset.train_y)}); give the data it was trained on")
        if train_ids_csv is not None and not np.array_equal(read_id_list(train_ids_csv, len(dataset.train_y)), ids):
            raise UnlearnkitError(f"{train_ids_csv} is not the training set of SISA ensemble {weights} ({ids.size} images, its shards' union); leave --train-ids out")
        with self.read() as session:
            self.same_dataset(session, dataset, data_path)
        import_checkpoints(self, ensemble, dataset, source, weights)
        return self._record_trained(actor, ensemble, ensemble.spec, weights, data_path, dataset, ids, ensemble.recipe.model_dump(), deploy,
                                    config=version_config(ensemble, dataset, self))

    def _record_trained(self, actor: str, model, spec: dict, weights: Path, data_path: str, dataset, ids: np.ndarray, recipe: dict | None,
                        deploy: bool, config: dict | None = None) -> ModelVersion:
        n_train = len(dataset.train_y)
        with self.write(actor) as (session, record):
            info = self.same_dataset(session, dataset, data_path)
            version = self.add_version(session, model, spec, kind="trained", parent=None, data=data_path, fingerprint=dataset.fingerprint,
                                        train_ids=ids, method=None, config=config, recipe=recipe, source={"path": str(weights), "sha256": sha256_file(weights)})
            rows = [version]
            if not info:
                state = State(key="dataset", value=json.dumps({"data": data_path, "fingerprint": dataset.fingerprint, "n_train": n_train,
                                                                "n_heldout": len(dataset.test_y), "classes": list(dataset.classes)}))
                session.add(state)
                rows.append(state)
            if deploy:
                rows.append(self.set_deployed(session, version))
            record("model.registered", {"version": version.id, "sha256": version.sha256, "deployed": deploy}, rows=rows)
        return version

    def same_dataset(self, session: Session, dataset, data_path: str) -> dict | None:
        """The registered data's description; refuses other data."""
        info = self.dataset_info(session)
        if info and info["fingerprint"] != dataset.fingerprint:
            raise UnlearnkitError(f"data {data_path} is not the dataset this ledger serves ({info['data']}); one ledger holds models of one dataset")
        return info

    def add_version(self, session: Session, model, spec: dict, *, kind: str, parent: ModelVersion | None, data: str,
                     fingerprint: str, train_ids: np.ndarray, method: str | None, config: dict | None, verdict: str | None = None,
                     excluded_subjects: list | None = None, **metadata) -> ModelVersion:
        """The weights into models/SHA.safetensors (with a sidecar), the training set into
        train-ids/, and the version row. None of the forgotten images may be in that set."""
        from unlearnkit.sisa import SisaEnsemble, save_ensemble
        from unlearnkit.store import save_model, sidecar_path

        leaked = np.intersect1d(train_ids, self.forgotten_ids(session))
        if leaked.size:
            raise UnlearnkitError(f"refusing to register a {kind} model trained on forgotten sample_id {int(leaked[0])} ({leaked.size} in all); a forgotten subject must never come back")
        staging = self.path(f"models/.incoming-{secrets.token_hex(8)}.safetensors")
        self.private_folder("models")
        if isinstance(model, SisaEnsemble):
            save_ensemble(model, staging, role=kind, **metadata)
        else:
            save_model(model, staging, factory=spec.get("factory"), factory_kwargs=spec.get("kwargs") if "factory" in spec else None, role=kind, **metadata)
        os.chmod(staging, FILE_MODE)
        digest = sha256_file(staging)
        if (existing := session.scalar(select(ModelVersion).where(ModelVersion.sha256 == digest))) is not None:
            staging.unlink()
            sidecar_path(staging).unlink()
            raise UnlearnkitError(f"these weights (sha256 {digest[:16]}…) are model version {existing.id} already")
        final = self.path(f"models/{digest}.safetensors")
        side = json.loads(sidecar_path(staging).read_text())
        side["weights"]["file"] = final.name  # the sidecar names its weights file
        staging.replace(final)
        self.write_file(f"models/{sidecar_path(final).name}", json.dumps(side, indent=2).encode())
        sidecar_path(staging).unlink()
        ids_path, ids_sha = self.save_train_ids(train_ids)
        version = ModelVersion(sha256=digest, path=f"models/{final.name}", spec=spec, parent_id=parent.id if parent else None, kind=kind, method=method,
                               config=config, data=data, data_fingerprint=fingerprint, train_ids_path=ids_path, train_ids_sha256=ids_sha,
                               train_count=int(np.unique(train_ids).size), excluded_subjects=sorted(excluded_subjects or []), verdict=verdict, created=now())
        session.add(version)
        return version

    def load(self, version: ModelVersion, device="cpu"):
        """The version's model, or its SISA ensemble (which deletes from the ledger's own store)."""
        from unlearnkit.service.ensembles import ledger_store
        from unlearnkit.sisa import SisaEnsemble, load_any_model

        path = self.path(version.path)
        if not path.is_file() or sha256_file(path) != version.sha256:
            raise UnlearnkitError(f"{path} is missing or does not match the sha256 the ledger recorded for model version {version.id}; the weights were changed")
        model = load_any_model(path, device)
        if isinstance(model, SisaEnsemble):
            model.store = ledger_store(self)
        return model

    def recipe(self, version: ModelVersion) -> dict | None:
        from unlearnkit.sisa import read_any_sidecar

        return read_any_sidecar(self.path(version.path)).get("recipe")

    # ---- requests -----------------------------------------------------------------------------
    def submit(self, actor: str, request_id: str | None = None, subjects=(), sample_ids=(), received: str | None = None,
               submitter: str | None = None) -> Submitted:
        """Record a deletion request. The same `request_id` with the same content again is a
        no-op (`created` False); with other content, or from another API token (`submitter`),
        it is refused."""
        request_id = validate_request_id(request_id) if request_id is not None else f"req-{secrets.token_hex(8)}"
        subjects = sorted({validate_subject(s) for s in subjects})
        sample_ids = [validate_sample_id(i) for i in sample_ids]
        if not subjects and not sample_ids:
            raise UnlearnkitError(f"request {request_id} names no subject and no sample_id; give at least one")
        received = received or now()
        try:
            with self.write(actor) as (session, record):
                existing = session.get(Request, request_id)
                if existing is not None:
                    return self._same(existing, subjects, sample_ids, submitter)
                info = self.dataset_info(session)
                for i in sample_ids:
                    check_sample_id(i, info, f"request {request_id}")
                ids = set(sample_ids)
                for subject in subjects:
                    found = session.scalars(select(Subject.sample_id).where(Subject.subject_id == subject)).all()
                    if not found:
                        raise UnlearnkitError(f"request {request_id}: subject '{subject}' is not in the subject map; import it with `unlearnkit ledger subjects FILE.csv`")
                    ids.update(found)
                days = self.policy(session)["deadline_days"]
                try:
                    deadline = parse_time(received) + timedelta(days=days)
                except OverflowError:
                    raise UnlearnkitError(f"the ledger's deadline policy ({quoted(days)} days) is out of range; set it with `unlearnkit ledger init --deadline-days 30`") from None
                request = Request(id=request_id, subjects=subjects, sample_ids=sorted(ids), received=received, deadline=deadline.isoformat(timespec="microseconds"),
                                  status="pending", action_id=None, served=None, submitted_by=submitter)
                session.add(request)
                record("request.received", {"request": request_id, "images": len(ids)}, rows=[request])
                return Submitted(request, True)
        except IntegrityError:  # the same id submitted at the same moment by another client
            with self.read() as session:
                return self._same(session.get(Request, request_id), subjects, sample_ids, submitter)

    @staticmethod
    def _same(existing: Request, subjects: list, sample_ids: list, submitter: str | None) -> Submitted:
        if existing.subjects != subjects or not set(sample_ids) <= set(existing.sample_ids) or (submitter is not None and existing.submitted_by != submitter):
            raise UnlearnkitError(f"request id {existing.id} was already used for another request; use a new id")
        return Submitted(existing, False)

    def requests(self, session: Session, statuses=OPEN) -> list[Request]:
        return list(session.scalars(select(Request).where(Request.status.in_(statuses)).order_by(Request.deadline, Request.id)))

    # ---- tokens -------------------------------------------------------------------------------
    def create_token(self, name: str, actor: str, scope: str = "read") -> str:
        """A new bearer token with one scope: `submit` (submit requests, see its own), `read`
        (see everything, change nothing) or `admin` (both). Only its sha256 is stored."""
        if scope not in SCOPES:
            raise UnlearnkitError(f"token scope {quoted(scope)} is unknown; choose one of {', '.join(SCOPES)}")
        name = validate_subject(name, "token name")
        token = "ulk_" + secrets.token_urlsafe(32)
        with self.write(actor) as (session, record):
            row = Token(name=name, sha256=hashlib.sha256(token.encode()).hexdigest(), created=now(), revoked=False, scope=scope)
            session.add(row)
            record("token.created", {"name": name, "scope": scope}, rows=[row])
        return token

    def tokens(self) -> list[dict]:
        with self.read() as session:
            return [{"id": t.id, "name": t.name, "scope": t.scope or "admin", "created": t.created, "revoked": t.revoked}
                    for t in session.scalars(select(Token).order_by(Token.id))]

    def revoke_token(self, token_id: int, actor: str) -> None:
        with self.write(actor) as (session, record):
            row = session.get(Token, token_id)
            if row is None:
                raise UnlearnkitError(f"token {token_id} is not in the ledger; `unlearnkit ledger token list` shows them")
            if not row.revoked:
                row.revoked = True
                record("token.revoked", {"token": token_id, "name": row.name}, rows=[row])

    def authenticate(self, token: str | None) -> Token | None:
        """The token's row (detached), or None when it is unknown or revoked. Every stored hash
        is compared, in constant time each."""
        if not token or len(token) > 200:
            return None
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        found = None
        with self.read() as session:
            for row in session.scalars(select(Token)).all():
                if hmac.compare_digest(presented, row.sha256) and not row.revoked:
                    found = row
        return found

    # ---- retention ----------------------------------------------------------------------------
    def version_files(self, version: ModelVersion, session: Session) -> list[Path]:
        """The files a version owns: weights, sidecar, its training ids unless a version that is
        not purged shares them, and (an ensemble) the folders of the slice checkpoints that no
        such version lists."""
        from unlearnkit.service.ensembles import owned_checkpoints
        from unlearnkit.store import sidecar_path

        files = [self.path(version.path), sidecar_path(self.path(version.path))]
        shared = session.scalar(select(func.count()).select_from(ModelVersion).where(
            ModelVersion.train_ids_path == version.train_ids_path, ModelVersion.id != version.id, ModelVersion.purged.is_(None)))
        return files + ([] if shared else [self.path(version.train_ids_path)]) + owned_checkpoints(self, version, session)

    def purge_due(self, session: Session, at: str | None = None) -> list[ModelVersion]:
        """The versions whose files must go now: not deployed, not purged yet, and either trained
        on an image of a served deletion request or an unlearned version that failed its verdict
        on a request since served, once `keep_superseded_days` have passed since that serving."""
        keep = timedelta(days=self.policy(session)["keep_superseded_days"])
        moment = parse_time(at or now())
        deployed = self.deployed(session)
        served = session.execute(select(Request.id, Request.sample_ids, Request.served).where(Request.status == "served")).all()
        # the requests each unlearning run was for (a request's action_id moves to its retraining)
        batch_of = {a.output_version: set(a.requests) for a in session.scalars(select(Action).where(Action.kind == "unlearn", Action.status == "done"))}
        due = []
        for version in session.scalars(select(ModelVersion).where(ModelVersion.purged.is_(None)).order_by(ModelVersion.id)):
            if deployed is not None and version.id == deployed.id:
                continue
            trained_on = np.load(self.path(version.train_ids_path))
            times = [parse_time(t) for _, ids, t in served if t and np.intersect1d(trained_on, np.asarray(ids, dtype=np.int64)).size]
            if version.kind == "unlearned" and version.verdict == "fail":
                times += [parse_time(t) for request, _, t in served if t and request in batch_of.get(version.id, ())]
            if times and min(times) + keep <= moment:
                due.append(version)
        return due

    def purge(self, actor: str, at: str | None = None) -> list[int]:
        """Purge what `purge_due` names (recorded in the chain first, then the files deleted), and
        delete any file a purged version left behind (a crash between the two). The version ids."""
        with self.write(actor) as (session, record):
            due = self.purge_due(session, at)
            for version in due:
                version.purged = now()
            if due:
                record("models.purged", {"versions": [v.id for v in due], "keep_superseded_days": self.policy(session)["keep_superseded_days"]}, rows=due)
        with self.read() as session:
            for version in session.scalars(select(ModelVersion).where(ModelVersion.purged.is_not(None))):
                for path in self.version_files(version, session):
                    if path.is_dir():  # a slice checkpoint's folder
                        shutil.rmtree(path, onerror=ignore_missing)
                    else:
                        path.unlink(missing_ok=True)
        return [v.id for v in due]

    # ---- the chain ----------------------------------------------------------------------------
    def verify(self, retention: bool = True) -> tuple[list[str], tuple[int, str]]:
        """What is wrong (chain, reports, weights; with `retention`, also purges due or left
        half-done) and the chain's head."""
        from unlearnkit.service.ensembles import STORE, missing_checkpoints

        with self.read() as session:
            problems, head = chain.verify(session)
            for action in session.scalars(select(Action).where(Action.report_path.is_not(None))):
                path = self.path(action.report_path)
                if not path.is_file() or sha256_file(path) != action.report_sha256:
                    problems.append(f"report {action.report_path} of action {action.id} is missing or changed since the ledger recorded its sha256")
            for version in session.scalars(select(ModelVersion).order_by(ModelVersion.id)):
                if version.purged is None and not self.path(version.path).is_file():
                    problems.append(f"the weights of model version {version.id} ({version.path}) are missing, and it was not purged")
                elif version.purged is None and (missing := missing_checkpoints(self, version)):
                    problems.append(f"{len(missing)} slice checkpoints of model version {version.id} (SISA ensemble) are missing from {STORE}/, and it was not purged")
                elif retention and version.purged is not None and (left := [p.name for p in self.version_files(version, session) if p.exists()]):
                    problems.append(f"model version {version.id} was purged at {version.purged[:19]} but {', '.join(left)} are still on disk; run `unlearnkit ledger purge`")
            due = self.purge_due(session) if retention else []
            if due:
                problems.append(f"model versions {', '.join(str(v.id) for v in due)} hold deleted data past the retention policy; run `unlearnkit ledger purge`")
        return problems, head

    def export(self, out: str | Path) -> Path:
        """The chain (JSON lines), its head, the verification, and every report, for an auditor."""
        out = Path(out)
        problems, head = self.verify()
        with self.read() as session:
            entries = session.scalars(select(LogEntry).order_by(LogEntry.seq)).all()
            lines = [json.dumps({k: getattr(e, k) for k in ("seq", "time", "actor", "event", "payload", "payload_sha256", "prev_hash", "hash")}) for e in entries]
            reports = [a.report_path for a in session.scalars(select(Action).where(Action.report_path.is_not(None)))]
        atomic_write_bytes(out / "audit-chain.jsonl", ("\n".join(lines) + "\n").encode())
        atomic_write_bytes(out / "verify.json", json.dumps({"head": {"seq": head[0], "hash": head[1]}, "problems": problems}, indent=2).encode())
        for report in reports:
            source = self.path(report)
            if source.is_file():
                target = out / report
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        return out

    def counts(self, session: Session) -> dict[str, int]:
        return dict(session.execute(select(Request.status, func.count()).group_by(Request.status)).all())


def _tables(engine) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(engine).get_table_names())


def _revision(engine) -> str | None:
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _redacted(location: str) -> str:
    """A database URL without its password, for the log."""
    if "://" in location and "@" in location:
        scheme, rest = location.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}@{host}"
    return location


def validate_request_id(value) -> str:
    text = value.strip() if isinstance(value, str) else None
    if text is None or not REQUEST_ID.fullmatch(text) or text in (".", ".."):
        raise UnlearnkitError(f"request id {quoted(value)} is not valid; use 1-128 ASCII letters, digits, '.', '_' or '-' (not '.' or '..')")
    return text


def validate_subject(value, what: str = "subject id") -> str:
    text = value.strip() if isinstance(value, str) else None
    if text is None or not text or len(text) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UnlearnkitError(f"{what} {quoted(value)} is not valid; give 1-200 printable characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnlearnkitError(f"{what} {quoted(value)} is not valid UTF-8 (it holds a lone surrogate); send the text as UTF-8") from None
    return text


def validate_sample_id(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, str)):
        raise UnlearnkitError(f"sample_id {quoted(value)} is not an integer; give indices into the training set")
    try:
        number = int(value)
    except ValueError:
        raise UnlearnkitError(f"sample_id {quoted(value)} is not an integer; give indices into the training set") from None
    if number < 0:
        raise UnlearnkitError(f"sample_id {number} is negative; give indices into the training set")
    return number


def check_sample_id(sample: int, info: dict | None, where: str) -> None:
    if info is None:
        raise UnlearnkitError(f"{where}: no model is registered yet, so sample ids cannot be checked; run `unlearnkit ledger register` first")
    training_sample_id(str(sample), where, info["n_train"], info["n_heldout"])


def read_subject_map(path: str | Path) -> list[tuple[str, int]]:
    path = Path(path)
    rows = read_csv_rows(path, "subject map")
    if not rows or not {"subject_id", "sample_id"} <= set(rows[0]):
        raise UnlearnkitError(f"subject map {path} needs the columns subject_id and sample_id and at least one row")
    pairs = []
    for line, row in enumerate(rows, start=2):
        try:
            pairs.append((validate_subject(row["subject_id"] or ""), validate_sample_id((row["sample_id"] or "").strip())))
        except UnlearnkitError as error:
            raise UnlearnkitError(f"{path} line {line}: {error}") from None
    return pairs


def read_id_list(path: str | Path, n_train: int) -> np.ndarray:
    path = Path(path)
    rows = read_csv_rows(path, "training id list")
    if not rows or "sample_id" not in rows[0]:
        raise UnlearnkitError(f"training id list {path} needs a sample_id column and at least one row")
    ids = np.array([validate_sample_id((row["sample_id"] or "").strip()) for row in rows], dtype=np.int64)
    if ids.max() >= n_train:
        raise UnlearnkitError(f"training id list {path}: sample_id {int(ids.max())} is not a training image (the training set has {n_train})")
    return np.unique(ids)


def time_left(deadline: str, at: str | None = None) -> tuple[str, bool]:
    """'12d 3h' until the deadline (or since it, when overdue) and whether it is overdue."""
    seconds = (parse_time(deadline) - parse_time(at or now())).total_seconds()
    span = abs(int(seconds))
    days, hours, minutes = span // 86400, span % 86400 // 3600, span % 3600 // 60
    text = f"{days}d {hours}h" if days else f"{hours}h {minutes}m"
    return text, seconds < 0


def overview(ledger: Ledger) -> dict:
    """What the dashboard and `ledger status` show, as plain data."""
    problems, head = ledger.verify()
    with ledger.read() as session:
        deployed = ledger.deployed(session)
        opened = []
        for request in ledger.requests(session):
            left, overdue = time_left(request.deadline)
            opened.append({"id": request.id, "status": request.status, "received": request.received, "deadline": request.deadline, "left": left,
                           "overdue": overdue, "images": len(request.sample_ids), "error": request.error})
        versions = [{"id": v.id, "kind": v.kind, "parent": v.parent_id, "method": v.method, "verdict": v.verdict, "train_count": v.train_count, "sha256": v.sha256,
                     "deployed": deployed is not None and v.id == deployed.id, "created": v.created, "purged": v.purged}
                    for v in session.scalars(select(ModelVersion).order_by(ModelVersion.id))]
        actions = [{"id": a.id, "kind": a.kind, "status": a.status, "requests": a.requests, "report": a.report_path, "seconds": a.seconds,
                    "passed": (a.verdict or {}).get("passed") if a.status == "done" and a.kind != "noop" else None, "error": a.error}
                   for a in session.scalars(select(Action).order_by(Action.id))]
        counts = ledger.counts(session)
    return {"counts": counts, "open": opened, "versions": versions, "actions": actions, "chain": {"problems": problems, "head": list(head)}}
