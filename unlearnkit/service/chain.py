"""The tamper-evident audit log: a hash chain appended in the same transaction as the change it
records, and a verifier that names the first entry or row that does not match.

Entry n's hash covers the previous entry's hash, its number, time, actor, event and the sha256
of its payload; the payload carries the digest of every row the change left behind. Editing,
deleting, inserting or reordering an entry breaks the chain at that entry; editing a row
outside the ledger makes the row differ from the digest its last entry recorded. The chain's
head (number and hash) is kept beside it and printed by `ledger verify`: an auditor who keeps a
copy of it also catches entries cut from the end.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from unlearnkit.service.db import Action, LogEntry, ModelVersion, Request, State, Subject, Token, canonical, now, row_values

GENESIS = "0" * 64
TRACKED = (ModelVersion, Request, Action, Token)  # tables whose rows are covered one by one
TRACKED_STATE = ("deployed", "dataset", "policy")  # state keys covered (leases and the head are not)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry_hash(prev_hash: str, seq: int, time: str, actor: str, event: str, payload_sha256: str) -> str:
    return sha256_text(canonical([prev_hash, seq, time, actor, event, payload_sha256]))


def row_key(row) -> str:
    if isinstance(row, State):
        return f"state/{row.key}"
    return f"{row.__tablename__}/{row.id}"


def row_digest(row) -> str:
    return sha256_text(canonical(row_values(row)))


def subjects_digest(session: Session) -> str:
    pairs = session.execute(select(Subject.subject_id, Subject.sample_id).order_by(Subject.subject_id, Subject.sample_id)).all()
    return sha256_text(canonical([list(pair) for pair in pairs]))


def head(session: Session, lock: bool = False) -> tuple[int, str]:
    found = session.get(State, "chain_head", with_for_update=lock, populate_existing=True)
    if found is None:
        return 0, GENESIS
    seq, hash_ = json.loads(found.value)
    return int(seq), hash_


def append(session: Session, actor: str, event: str, payload: dict, rows=(), subjects: bool = False) -> LogEntry:
    """Append one entry for a change made in `session` (not yet committed): `rows` are the rows
    it created or changed, `subjects` says it changed the subject map."""
    session.flush()  # ids of new rows
    covered = {row_key(row): row_digest(row) for row in rows}
    if subjects:
        covered["subjects"] = subjects_digest(session)
    body = canonical({**payload, "rows": covered})
    seq, prev = head(session, lock=True)
    time = now()
    payload_sha = sha256_text(body)
    entry = LogEntry(seq=seq + 1, time=time, actor=actor, event=event, payload=body, payload_sha256=payload_sha,
                     prev_hash=prev, hash=entry_hash(prev, seq + 1, time, actor, event, payload_sha))
    session.add(entry)
    value = json.dumps([entry.seq, entry.hash])
    if (state := session.get(State, "chain_head")) is None:
        session.add(State(key="chain_head", value=value))
    else:
        state.value = value
    return entry


def verify(session: Session) -> tuple[list[str], tuple[int, str]]:
    """Every problem found (the first chain break first), and the chain's head."""
    problems: list[str] = []
    expected, prev = 1, GENESIS
    recorded: dict[str, tuple[str, int]] = {}
    for entry in session.scalars(select(LogEntry).order_by(LogEntry.seq)):
        if entry.seq != expected:
            problems.append(f"audit entry {expected} is missing (the next one is {entry.seq}): entries were deleted")
            expected = entry.seq
        if entry.prev_hash != prev:
            problems.append(f"audit entry {entry.seq} ({entry.event}) does not follow entry {entry.seq - 1}: an entry was inserted, deleted or moved before it")
        if sha256_text(entry.payload) != entry.payload_sha256 or entry_hash(
            entry.prev_hash, entry.seq, entry.time, entry.actor, entry.event, entry.payload_sha256
        ) != entry.hash:
            problems.append(f"audit entry {entry.seq} ({entry.event}) was edited: its hash does not match its content")
        try:
            rows = json.loads(entry.payload).get("rows", {})
        except (ValueError, AttributeError):
            rows = {}
        for key, digest in rows.items():
            recorded[key] = (digest, entry.seq)
        prev, expected = entry.hash, entry.seq + 1
    last = (expected - 1, prev)
    stored = head(session)
    if stored != last:
        problems.append(f"the chain's head records entry {stored[0]} but the chain ends at entry {last[0]}: entries were cut from the end or the head was edited")

    current = {row_key(row): row_digest(row) for table in TRACKED for row in session.scalars(select(table))}
    current.update({row_key(row): row_digest(row) for row in session.scalars(select(State).where(State.key.in_(TRACKED_STATE)))})
    current["subjects"] = subjects_digest(session)
    if "subjects" not in recorded and current["subjects"] == subjects_digest_of_nothing():
        current.pop("subjects")
    for key in sorted(current, key=_natural):
        if key not in recorded:
            problems.append(f"row {key} is in no audit entry: it was written outside the ledger")
        elif recorded[key][0] != current[key]:
            problems.append(f"row {key} differs from what audit entry {recorded[key][1]} recorded: it was edited outside the ledger")
    for key in sorted(set(recorded) - set(current), key=_natural):
        problems.append(f"row {key}, recorded by audit entry {recorded[key][1]}, is gone: it was deleted outside the ledger")
    return problems, stored


def subjects_digest_of_nothing() -> str:
    return sha256_text(canonical([]))


def _natural(key: str):
    table, _, ident = key.partition("/")
    return (table, int(ident) if ident.isdigit() else 0, ident)
