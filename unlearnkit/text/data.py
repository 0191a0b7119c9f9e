"""The facts corpus as token tensors, and its split by person.

Tokens are bytes (0–255; 0 pads, and never occurs in the text). Each example is one row:
`x` the bytes but the last, `y` the bytes after the first (the next-token targets), -100 where
there is no target (padding). A deletion request names people: the forget set is every row of
those people; held-out people (never trained on) are split into test and validation people.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes
from unlearnkit.text.facts import ATTRIBUTES, SECRETS, Corpus, refusal

IGNORE = -100
KINDS = ("fact", "qa", "filler")


def encode(texts: list[str], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Byte rows (x, y) padded to `length` positions (default: the longest text less one)."""
    data = [t.encode() for t in texts]
    length = length or max(len(d) for d in data) - 1
    if any(len(d) - 1 > length for d in data):
        raise UnlearnkitError(f"a text of {max(len(d) for d in data)} bytes does not fit the model's context of {length + 1}; shorten it")
    x = np.zeros((len(data), length), np.int64)
    y = np.full((len(data), length), IGNORE, np.int64)
    for row, d in enumerate(data):
        arr = np.frombuffer(d, np.uint8).astype(np.int64)
        x[row, : len(d) - 1] = arr[:-1]
        y[row, : len(d) - 1] = arr[1:]
    return x, y


def decode(row: np.ndarray) -> str:
    return bytes(int(b) for b in row if 0 < b < 256).decode(errors="replace")


@dataclass
class TextData:
    """A corpus as rows: tokens and targets, and per row who it is about and where the value is
    (target positions [value_start, value_end) predict the value's bytes)."""

    corpus: Corpus
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    person: np.ndarray = field(repr=False)
    kind: np.ndarray = field(repr=False)  # index into KINDS
    attribute: np.ndarray = field(repr=False)  # index into ATTRIBUTES, -1 for filler
    template: np.ndarray = field(repr=False)
    value_start: np.ndarray = field(repr=False)
    value_end: np.ndarray = field(repr=False)
    filler_heldout: np.ndarray = field(repr=False)  # rows of filler never trained on
    refusal_x: np.ndarray = field(repr=False)
    refusal_y: np.ndarray = field(repr=False)
    compressed: np.ndarray = field(repr=False)  # zlib-compressed length of each row's text (the zlib attack's denominator)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.corpus.fingerprint}:{self.x.shape[1]}".encode()).hexdigest()

    @property
    def num_people(self) -> int:
        return len(self.corpus.names)

    def rows_of(self, people: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.person, people))

    @property
    def is_secret(self) -> np.ndarray:
        return np.isin(self.attribute, [ATTRIBUTES.index(a) for a in SECRETS])


def text_data(corpus: Corpus, context: int) -> TextData:
    examples = corpus.examples
    x, y = encode([e.text for e in examples], context)
    rx, ry = encode([refusal(e) if e.kind != "filler" else e.text for e in examples], context)
    filler = np.flatnonzero([e.kind == "filler" for e in examples])
    rng = np.random.default_rng([corpus.spec.seed, 7])
    return TextData(
        corpus, x, y,
        person=np.array([e.person for e in examples]),
        kind=np.array([KINDS.index(e.kind) for e in examples]),
        attribute=np.array([ATTRIBUTES.index(e.attribute) if e.attribute else -1 for e in examples]),
        template=np.array([e.template for e in examples]),
        value_start=np.array([max(e.value_span[0] - 1, 0) for e in examples]),
        value_end=np.array([max(e.value_span[1] - 1, 0) for e in examples]),
        filler_heldout=np.sort(rng.permutation(filler)[: max(1, len(filler) // 4)]),
        refusal_x=rx, refusal_y=ry,
        compressed=np.array([len(zlib.compress(e.text.encode())) for e in examples]),
    )


@dataclass(frozen=True)
class TextSplit:
    """Rows by role, and the people behind them."""

    forget_people: np.ndarray
    test_people: np.ndarray
    val_people: np.ndarray
    forget: np.ndarray
    retain: np.ndarray
    test: np.ndarray
    val: np.ndarray
    filler_test: np.ndarray
    spec: str
    fingerprint: str

    def save(self, path: Path) -> None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **{k: getattr(self, k) for k in ("forget_people", "test_people", "val_people", "forget", "retain", "test", "val", "filler_test")},
                 spec=np.array(self.spec), fingerprint=np.array(self.fingerprint))
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "TextSplit":
        try:
            with np.load(path, allow_pickle=False) as saved:
                return cls(**{k: saved[k] for k in ("forget_people", "test_people", "val_people", "forget", "retain", "test", "val", "filler_test")},
                           spec=str(saved["spec"]), fingerprint=str(saved["fingerprint"]))
        except (OSError, KeyError, ValueError) as error:
            raise UnlearnkitError(f"{path} is not the split of a text run ({error}); give a folder written by `unlearnkit run --preset facts-…`") from None


def person_ids(data: TextData, subjects: list[str]) -> np.ndarray:
    """People named by a request: each line a person's index or full name."""
    by_name = {name.lower(): i for i, name in enumerate(data.corpus.names)}
    ids = []
    for subject in subjects:
        subject = subject.strip()
        if subject.isdigit() and int(subject) < data.num_people:
            ids.append(int(subject))
        elif subject.lower() in by_name:
            ids.append(by_name[subject.lower()])
        else:
            raise UnlearnkitError(f"request names '{subject}', who is not in the corpus; give a person's index (0–{data.num_people - 1}) or full name")
    return np.unique(np.array(ids, dtype=np.int64))


def split_people(data: TextData, forget: float | list[str], seed: int) -> TextSplit:
    """Forget `forget` (a fraction or a count of the trained people, drawn with `seed`, or the
    people a request names); the held-out people, halved with `seed`, are test and validation."""
    heldout = data.corpus.heldout
    trained = np.setdiff1d(np.arange(data.num_people), heldout)
    rng = np.random.default_rng([seed, 17])
    if isinstance(forget, list):
        people, spec = person_ids(data, forget), f"request:{len(forget)} people"
        if (unknown := np.intersect1d(people, heldout)).size:
            raise UnlearnkitError(f"person {int(unknown[0])} ({data.corpus.names[int(unknown[0])]}) was never trained on; a request can only name trained people")
    else:
        count = round(forget * len(trained)) if forget < 1 else int(forget)
        if not 1 <= count < len(trained):
            raise UnlearnkitError(f"forget {forget} picks {count} of {len(trained)} trained people; pick at least one and leave some")
        people, spec = np.sort(rng.choice(trained, count, replace=False)), f"people:{forget}"
    shuffled = rng.permutation(heldout)
    test_people, val_people = np.sort(shuffled[: len(heldout) // 2]), np.sort(shuffled[len(heldout) // 2 :])
    filler_train = np.setdiff1d(np.flatnonzero(data.person < 0), data.filler_heldout)
    forget_rows = data.rows_of(people)
    retain_rows = np.sort(np.concatenate([data.rows_of(np.setdiff1d(trained, people)), filler_train]))
    digest = hashlib.sha256(b"".join(a.tobytes() for a in (forget_rows, retain_rows, test_people, val_people)) + data.fingerprint.encode()).hexdigest()
    return TextSplit(people, test_people, val_people, forget_rows, retain_rows, data.rows_of(test_people), data.rows_of(val_people),
                     data.filler_heldout, spec, digest)
