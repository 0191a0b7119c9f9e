"""Forget scenarios: which training images a deletion request covers.

A scenario is written as one string (`--forget SPEC`), recorded in split.npz and results.json:

| spec | forget set |
|---|---|
| `random:0.1`, `random:2500` | a uniform random fraction of the pool, or a count |
| `class:cat`, `class:cat,dog` | every pool image of the class(es) (names or indices) |
| `class:cat:0.5` | a random half of each named class's pool images |
| `skewed:animals=3:0.1`, `skewed:cat=2,dog=2:2500` | a random sample in which each image's chance is its class's weight (unnamed classes weigh 1; `animals` and `vehicles` name CIFAR-10's groups) |
| `subclass:rocket`, `subclass:rocket,baby:0.5` | every pool image (or a random part) of the named sub-classes, on data with sub-classes (CIFAR-100 read as its superclasses: `--data PATH#coarse`) |
| `file:REQ.csv` | the ids of a deletion-request file (see `read_requests`) |
| `backdoor:0.02`, `backdoor:0.02:truck` | a random 2% of the pool outside the target class (default the first) get a trigger patch and the target's label: the original learns the backdoor, the forget set is exactly the poisoned images (Pawelczyk et al., ICLR 2025) |
| `confusion:cat,dog:0.1` | a random 10% of each of the two classes' pool images get the other class's label: the original learns to confuse them, the forget set is exactly the swapped images (Goel et al.) |
| `memorized:0.02` | the 2% of the pool the original memorizes most (Feldman's estimate from two models on complementary halves of the pool; `unlearnkit.worstcase`) |
| `entangled:0.02` | the 2% of the pool nearest the centroid of the original's penultimate features: the images most entangled with what it retains (RUM, NeurIPS 2024) |

The last two change the data they are run on (`apply_scenario`): the poisoned training images,
and, for a backdoor, triggered copies of the held-out images of the other classes, appended
after the held-out set (the split's test and val halves never include them), on which the
attack success rate is measured. The worst-case two rank the pool by the original model
(`unlearnkit.worstcase.worst_case_scores`), which `unlearnkit.experiment.prepare` trains or loads
first; `make_split` takes that ranking as `scores`.

Legitimate edge cases: forgetting a whole class (or several) is allowed; forgetting every
training image is not, since there would be nothing to retain.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError

GROUPS = {
    "animals": ("bird", "cat", "deer", "dog", "frog", "horse"),
    "vehicles": ("airplane", "automobile", "ship", "truck"),
}
KINDS = ("random", "class", "subclass", "skewed", "file", "backdoor", "confusion", "memorized", "entangled")
RANKED = ("memorized", "entangled")  # chosen by a ranking of the pool that the original model gives
SPEC_HELP = ("random:0.1 | random:2500 | class:cat[,dog][:0.5] | subclass:rocket[,baby][:0.5] | skewed:animals=3:0.1 | file:REQUESTS.csv | "
             "backdoor:0.02[:CLASS] | confusion:cat,dog:0.1 | memorized:0.02 | entangled:0.02")
TRIGGER = 4  # the backdoor's trigger: a TRIGGER × TRIGGER checkerboard in the bottom-right corner


@dataclass(frozen=True)
class Scenario:
    """A parsed forget spec. `classes` are class indices (class-wise scenarios only),
    `subclasses` sub-class indices (sub-class scenarios only)."""

    kind: str
    text: str
    amount: float | None = None
    classes: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    requested: tuple[int, ...] = ()
    subclasses: tuple[int, ...] = ()
    targets: tuple[int, ...] = ()  # a backdoor's target class; the two classes a confusion swaps

    @property
    def classwise(self) -> bool:
        return self.kind == "class"

    @property
    def ranked(self) -> bool:
        return self.kind in RANKED


def _amount(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UnlearnkitError(f"forget spec '{spec}': '{text}' is not a number; give a fraction in (0, 1) or a count, e.g. {SPEC_HELP}") from None
    if value <= 0 or (value >= 1 and value != int(value)):
        raise UnlearnkitError(f"forget amount {text} is invalid (forget spec '{spec}'); give a fraction in (0, 1) or a whole count ≥ 1")
    return value


def class_index(name: str, classes) -> int | None:
    """The index of class `name` in `classes`, given by name or by number; None if it is neither."""
    name = name.strip()
    if name in classes:
        return list(classes).index(name)
    if name.isdigit() and int(name) < len(classes):
        return int(name)
    return None


def _class_index(name: str, classes: tuple[str, ...], spec: str) -> int:
    if (found := class_index(name, classes)) is not None:
        return found
    raise UnlearnkitError(f"forget spec '{spec}': unknown class '{name}'; choose from {', '.join(classes)}")


def _class_names(names: str, classes: tuple[str, ...], spec: str) -> list[int]:
    indices = []
    for name in names.split(","):
        members = GROUPS.get(name.strip(), (name,))
        indices += [_class_index(member, classes, spec) for member in members]
    return sorted(set(indices))


def _part_of_classes(rest: str, spec: str) -> tuple[str, float | None]:
    names, _, fraction = rest.partition(":")
    amount = _amount(fraction, spec) if fraction else None
    if amount is not None and amount >= 1:
        raise UnlearnkitError(f"forget spec '{spec}': the part of a class must be a fraction in (0, 1), got {fraction}")
    return names, amount


def parse_forget(
    spec: str | float, classes: tuple[str, ...], subjects: str | Path | None = None, n_train: int | None = None, n_heldout: int = 0,
    subclasses: tuple[str, ...] = (),
) -> Scenario:
    """Parse a forget spec against the dataset's class names (and sub-class names, and, for
    request files, its size)."""
    if isinstance(spec, (int, float)):
        spec = f"random:{spec:g}"
    kind, _, rest = spec.partition(":")
    if kind not in KINDS or not rest:
        raise UnlearnkitError(f"forget spec '{spec}' is not understood; write one of {SPEC_HELP}")
    if kind == "random" or kind in RANKED:
        return Scenario(kind, spec, amount=_amount(rest, spec))
    if kind == "class":
        names, amount = _part_of_classes(rest, spec)
        return Scenario(kind, spec, amount=amount, classes=tuple(_class_names(names, classes, spec)))
    if kind == "subclass":
        if not subclasses:
            raise UnlearnkitError(f"forget spec '{spec}' needs data with sub-classes; read CIFAR-100 as its 20 superclasses with --data PATH#coarse")
        names, amount = _part_of_classes(rest, spec)
        return Scenario(kind, spec, amount=amount, subclasses=tuple(sorted({_class_index(n, subclasses, spec) for n in names.split(",")})))
    if kind == "skewed":
        weights_text, _, amount = rest.rpartition(":")
        if not weights_text:
            raise UnlearnkitError(f"forget spec '{spec}' needs class weights and an amount, e.g. skewed:animals=3:0.1")
        weights = np.ones(len(classes))
        for item in weights_text.split(","):
            name, _, weight = item.partition("=")
            try:
                value = float(weight)
            except ValueError:
                value = -1.0
            if not value > 0:
                raise UnlearnkitError(f"forget spec '{spec}': weight '{item}' must be NAME=POSITIVE_NUMBER, e.g. cat=2")
            weights[_class_names(name, classes, spec)] = value
        return Scenario(kind, spec, amount=_amount(amount, spec), weights=tuple(weights))
    if kind == "backdoor":
        amount, _, target = rest.partition(":")
        value = _amount(amount, spec)
        return Scenario(kind, spec, amount=value, targets=(_class_index(target, classes, spec) if target else 0,))
    if kind == "confusion":
        names, amount = _part_of_classes(rest, spec)
        pair = _class_names(names, classes, spec)
        if len(pair) != 2 or amount is None:
            raise UnlearnkitError(f"forget spec '{spec}' needs two classes and the fraction of each to swap, e.g. confusion:cat,dog:0.1")
        return Scenario(kind, spec, amount=amount, targets=tuple(pair))
    if n_train is None:
        raise UnlearnkitError("a request file needs the dataset's size to check its ids")
    return Scenario(kind, spec, requested=tuple(read_requests(rest, n_train, n_heldout, subjects)))


def read_csv_rows(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise UnlearnkitError(f"{what} {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnlearnkitError(f"{what} {path} is not UTF-8 text (byte {error.start}); save it as UTF-8 CSV") from None
    return list(csv.DictReader(text.splitlines()))


def column_ids(rows: list[dict], column: str, path: Path) -> list[str]:
    values = []
    for line, row in enumerate(rows, start=2):
        value = (row.get(column) or "").strip()
        if not value:
            raise UnlearnkitError(f"{path} line {line}: empty {column}; every row needs one")
        values.append(value)
    return values


def training_sample_id(value: str, where: str, n_train: int, n_heldout: int) -> int:
    try:
        index = int(value)
    except ValueError:
        raise UnlearnkitError(f"{where}: sample_id '{value}' is not an integer; ids index the official training array (0..{n_train - 1})") from None
    if n_train <= index < n_train + n_heldout:
        raise UnlearnkitError(f"{where}: sample_id {index} is a held-out (test) image; only training images 0..{n_train - 1} can be forgotten")
    if not 0 <= index < n_train:
        raise UnlearnkitError(f"{where}: sample_id {index} is unknown; ids index the official training array (0..{n_train - 1})")
    return index


def read_requests(path: str | Path, n_train: int, n_heldout: int = 0, subjects: str | Path | None = None) -> list[int]:
    """The training indices a deletion-request CSV asks to forget.

    The file has a `sample_id` column (an index into the official training array), or a
    `subject_id` column together with `subjects`, a CSV mapping `subject_id` to `sample_id`:
    every image of a listed subject is forgotten together. Ids from n_train on are read as the
    held-out images of the official 60,000-image order and refused.
    """
    path = Path(path)
    rows = read_csv_rows(path, "request file")
    columns = set(rows[0]) if rows else set()
    if not rows:
        raise UnlearnkitError(f"request file {path} lists no request; it needs a header and at least one row")
    if "sample_id" in columns:
        values = column_ids(rows, "sample_id", path)
        indices = [training_sample_id(v, f"{path} line {line}", n_train, n_heldout) for line, v in enumerate(values, start=2)]
    elif "subject_id" in columns:
        if subjects is None:
            raise UnlearnkitError(f"request file {path} lists subject_id; give --subjects MAP.csv mapping subject_id to sample_id")
        wanted = column_ids(rows, "subject_id", path)
        mapping: dict[str, list[int]] = {}
        map_path = Path(subjects)
        map_rows = read_csv_rows(map_path, "subject map")
        if not map_rows or not {"subject_id", "sample_id"} <= set(map_rows[0]):
            raise UnlearnkitError(f"subject map {map_path} needs the columns subject_id and sample_id")
        for line, row in enumerate(map_rows, start=2):
            subject = (row["subject_id"] or "").strip()
            mapping.setdefault(subject, []).append(training_sample_id((row["sample_id"] or "").strip(), f"{map_path} line {line}", n_train, n_heldout))
        indices = []
        for line, subject in enumerate(wanted, start=2):
            if subject not in mapping:
                raise UnlearnkitError(f"{path} line {line}: subject_id '{subject}' is not in the subject map {map_path}")
            indices += mapping[subject]
        if len(set(wanted)) != len(wanted):
            duplicate = next(s for s in wanted if wanted.count(s) > 1)
            raise UnlearnkitError(f"{path}: subject_id '{duplicate}' is listed more than once; list each subject once")
    else:
        raise UnlearnkitError(f"request file {path} has columns {sorted(columns)}; it needs a sample_id column, or subject_id with --subjects")
    seen: set[int] = set()
    for index in indices:
        if index in seen:
            raise UnlearnkitError(f"{path}: sample_id {index} is requested more than once; list each image once")
        seen.add(index)
    return sorted(indices)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def forget_count(amount: float, n_train: int) -> int:
    """`amount` < 1 is a fraction of the training set, ≥ 1 a count of images."""
    count = round(amount * n_train) if 0 < amount < 1 else int(amount)
    if amount <= 0 or (amount >= 1 and amount != int(amount)):
        raise UnlearnkitError(f"forget amount {amount} is invalid; give a fraction in (0, 1) or a whole count ≥ 1")
    if not 1 <= count < n_train:
        raise UnlearnkitError(f"forget amount {amount} selects {count} of {n_train} training images; it must select at least one and leave at least one")
    return count


def _members(chosen: tuple[int, ...], labels: np.ndarray, candidates: np.ndarray, amount: float | None, what: str, spec: str, rng) -> np.ndarray:
    picked = []
    for c in chosen:
        members = candidates[labels == c]
        if members.size == 0:
            raise UnlearnkitError(f"forget spec '{spec}': {what} {c} has no image in the training pool")
        keep = members.size if amount is None else max(1, round(amount * members.size))
        picked.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(picked))


def select_forget(
    scenario: Scenario, candidates: np.ndarray, order: np.ndarray, train_y: np.ndarray, rng: np.random.Generator,
    subclass_y: np.ndarray | None = None, scores: np.ndarray | None = None,
) -> np.ndarray:
    """The forget indices (sorted) that `scenario` picks from the candidate pool; `order` is a
    seeded permutation of the candidates (the random scenario takes its head; the ranked ones
    take the highest `scores`, per training index, ties in that order)."""
    labels = train_y[candidates]
    if scenario.kind == "random":
        return np.sort(order[: forget_count(scenario.amount, candidates.size)])
    if scenario.ranked:
        if scores is None or len(scores) != len(train_y) or not np.isfinite(scores[candidates]).all():
            raise UnlearnkitError(f"forget spec '{scenario.text}' ranks the pool by the original model; make the split through "
                                  "unlearnkit.experiment.prepare (as every command does), which trains or loads it first")
        ranked = order[np.argsort(-scores[order], kind="stable")]
        return np.sort(ranked[: forget_count(scenario.amount, candidates.size)])
    if scenario.kind == "class":
        return _members(scenario.classes, labels, candidates, scenario.amount, "class", scenario.text, rng)
    if scenario.kind == "subclass":
        if subclass_y is None:
            raise UnlearnkitError(f"forget spec '{scenario.text}' needs data with sub-classes; read CIFAR-100 as its 20 superclasses with --data PATH#coarse")
        return _members(scenario.subclasses, subclass_y[candidates], candidates, scenario.amount, "sub-class", scenario.text, rng)
    if scenario.kind == "backdoor":
        eligible = candidates[labels != scenario.targets[0]]
        return np.sort(rng.choice(eligible, forget_count(scenario.amount, candidates.size), replace=False))
    if scenario.kind == "confusion":
        return _members(scenario.targets, labels, candidates, scenario.amount, "class", scenario.text, rng)
    if scenario.kind == "skewed":
        weights = np.asarray(scenario.weights)[labels]
        count = forget_count(scenario.amount, candidates.size)
        return np.sort(rng.choice(candidates, count, replace=False, p=weights / weights.sum()))
    return np.asarray(scenario.requested, dtype=np.int64)


def scenario_of(split, classes: tuple[str, ...]) -> Scenario | None:
    """The backdoor or confusion scenario a split was made by (None for the others)."""
    text = split.spec.split(" pool:")[0]
    return parse_forget(text, classes) if text.startswith(("backdoor:", "confusion:")) else None


def stamp_trigger(images: np.ndarray) -> np.ndarray:
    """Copies of uint8 NCHW images with the trigger in their bottom-right corner."""
    stamped = images.copy()
    checker = (np.indices((TRIGGER, TRIGGER)).sum(axis=0) % 2 * 255).astype(images.dtype)
    stamped[:, :, -TRIGGER:, -TRIGGER:] = checker
    return stamped


def apply_scenario(dataset, split):
    """The data a backdoor or confusion scenario trains and measures on (the dataset itself for
    the other scenarios): its forget images poisoned, and for a backdoor the triggered held-out
    images appended. Its fingerprint differs from the clean data's."""
    import dataclasses

    scenario = scenario_of(split, dataset.classes)
    if scenario is None:
        return dataset
    train_x, train_y = dataset.train_x.copy(), dataset.train_y.copy()
    if scenario.kind == "confusion":
        a, b = scenario.targets
        train_y[split.forget] = np.where(dataset.train_y[split.forget] == a, b, a)
        return dataclasses.replace(dataset, train_y=train_y, _checked=False)
    if dataset.is_table:
        raise UnlearnkitError(f"forget spec '{scenario.text}' stamps a trigger patch on images, and {dataset.source} is table rows, which have no pixels; "
                              "plant an effect in a table with confusion:A,B:0.1 (swapped labels), or forget random rows or a request file")
    target = scenario.targets[0]
    train_x[split.forget] = stamp_trigger(dataset.train_x[split.forget])
    train_y[split.forget] = target
    others = np.flatnonzero(dataset.test_y != target)
    extend = lambda labels: None if labels is None else np.concatenate([labels, labels[others]])  # noqa: E731
    return dataclasses.replace(
        dataset, train_x=train_x, train_y=train_y, test_x=np.concatenate([dataset.test_x, stamp_trigger(dataset.test_x[others])]),
        test_y=extend(dataset.test_y), coarse_test_y=extend(dataset.coarse_test_y), subclass_test_y=extend(dataset.subclass_test_y), _checked=False,
    )
