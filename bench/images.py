"""Images for the speed benchmarks: a real dataset's first images, or random ones (speed does
not depend on content)."""

from __future__ import annotations

import numpy as np


def bench_images(data: str | None, count: int) -> tuple[np.ndarray, np.ndarray]:
    if data:
        from unlearnkit.data import load_dataset

        ds = load_dataset(data)
        return ds.train_x[:count], ds.train_y[:count]
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, count)
