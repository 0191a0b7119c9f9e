"""What every command starts from: the dataset, the preset, the split and the store."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from unlearnkit.data import Dataset, load_dataset
from unlearnkit.data.scenarios import apply_scenario, parse_forget
from unlearnkit.data.splits import Split, make_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.presets import Preset, get_preset
from unlearnkit.store import Store


@dataclass
class Setup:
    dataset: Dataset
    preset: Preset
    split: Split
    store: Store


def prepare(*, data=None, preset: str | Preset = "default", seed: int = 0, cache=None, forget: float | str | None = None, subjects=None) -> Setup:
    """`forget` is a scenario spec (see `unlearnkit.data.scenarios`; default: the preset's random
    fraction); `subjects` maps subject ids to sample ids for request files that name subjects."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    dataset = load_dataset(data if data is not None else preset.data)
    if dataset.is_table and preset.recipe.augment:
        raise UnlearnkitError(f"preset {preset.name} turns on image augmentation (recipe.augment), but {dataset.source} is table rows, which have no pixels to crop or flip; set augment = false")
    scenario = parse_forget(preset.forget if forget is None else forget, dataset.classes, subjects, len(dataset.train_y), len(dataset.test_y), dataset.subclasses)
    store = Store(cache) if cache else Store()
    split_of = functools.partial(
        make_split, dataset.train_y, len(dataset.test_y), classes=dataset.classes, subclass_y=dataset.subclass_train_y, seed=seed,
        pool=preset.train_pool if preset.train_pool and preset.train_pool < len(dataset.train_y) else None, data_fingerprint=dataset.fingerprint,
    )
    scores = None
    if scenario.ranked:  # the original ranks the pool; it trains on the whole pool, so any split of it will do
        from unlearnkit.worstcase import worst_case_scores

        scores = worst_case_scores(scenario.kind, dataset, split_of(forget=f"random:{scenario.amount:g}"), preset, seed, store)
    split = split_of(forget=scenario, scores=scores)
    if (changed := apply_scenario(dataset, split)) is not dataset:  # a backdoor or a confusion: the poisoned data
        dataset, split = changed, dataclasses.replace(split, data_fingerprint=changed.fingerprint)
    return Setup(dataset, preset, split, store)
