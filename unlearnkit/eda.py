"""`unlearnkit eda`: what people should look at before unlearning a set of images: how the
forget set's classes compare with the retain set's, what the sets look like on average, where
the forget images sit in the original model's feature space, and a sample of the images."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data import Dataset
from unlearnkit.data.splits import Split
from unlearnkit.progress import say
from unlearnkit.report import plt, save_figure


def class_distribution(dataset: Dataset, split: Split, path: Path) -> Path:
    """Grouped bars: images per class in the forget and retain sets, with the counts written on them."""
    k = dataset.num_classes
    counts = {
        "forget": np.bincount(dataset.train_y[split.forget], minlength=k),
        "retain": np.bincount(dataset.train_y[split.retain], minlength=k),
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharex=True)
    x = np.arange(k)
    for ax, (name, values), color in zip(axes, counts.items(), ("tab:red", "tab:blue")):
        bars = ax.bar(x, values, color=color)
        ax.bar_label(bars, fontsize=7)
        share = values / max(values.sum(), 1)
        ax.set_title(f"{name}: {values.sum()} images (largest class {100 * share.max():.1f}%)")
        ax.set_xticks(x, dataset.classes, rotation=30, ha="right")
        ax.set_ylabel("images")
    fig.suptitle(f"class distribution of the forget and retain sets ({split.spec})")
    return save_figure(fig, path)


def mean_images(dataset: Dataset, split: Split, path: Path) -> Path:
    """Mean image of each set in pixel space (top) and after per-channel normalization with the
    training pool's statistics (bottom, on one common stretch so the sets compare)."""
    sets = {
        "forget": dataset.train_x[split.forget],
        "retain": dataset.train_x[split.retain],
        "test": dataset.test_x[split.test],
    }
    pool = np.concatenate([sets["forget"], sets["retain"]])
    channel_mean = pool.mean(axis=(0, 2, 3), dtype=np.float64)[:, None, None]
    channel_std = pool.std(axis=(0, 2, 3), dtype=np.float64)[:, None, None]
    means = {name: x.mean(axis=0, dtype=np.float64) for name, x in sets.items()}
    normalized = {name: (mean - channel_mean) / channel_std for name, mean in means.items()}
    reach = max(max(np.abs(n).max() for n in normalized.values()), 1e-12)
    fig, axes = plt.subplots(2, len(sets), figsize=(3 * len(sets), 6.2))
    for column, name in enumerate(sets):
        axes[0, column].imshow((means[name] / 255).transpose(1, 2, 0).clip(0, 1))
        axes[0, column].set_title(f"{name} mean (n={len(sets[name])})")
        axes[1, column].imshow(((normalized[name] / reach + 1) / 2).transpose(1, 2, 0))
        axes[1, column].set_title(f"normalized, max |z| {np.abs(normalized[name]).max():.2f}")
        for ax in axes[:, column]:
            ax.axis("off")
    fig.suptitle(f"mean images before and after normalization (bottom: z-scores, grey = 0, full colour = ±{reach:.2f})")
    return save_figure(fig, path)


def sample_grid(dataset: Dataset, split: Split, path: Path, count: int = 48, seed: int = 0) -> Path:
    """A seeded sample of forget images with their labels."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(split.forget, min(count, split.forget.size), replace=False)
    columns = 8
    rows = int(np.ceil(len(picked) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.45), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, picked):
        image = dataset.train_x[index]
        ax.imshow(image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0], cmap=None if image.shape[0] == 3 else "gray")
        ax.set_title(f"{index}: {dataset.classes[dataset.train_y[index]]}", fontsize=7)
    fig.suptitle(f"{len(picked)} of the {split.forget.size} forget images")
    return save_figure(fig, path)


@torch.no_grad()
def penultimate_features(model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    from unlearnkit.models.interface import features
    from unlearnkit.train import model_device, to_float

    model.eval()
    device = model_device(model)
    chunks = [features(model, to_float(torch.from_numpy(x[i : i + batch_size]).to(device))).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(chunks).numpy()


def tsne_figure(model, dataset: Dataset, split: Split, path: Path, per_set: int = 600, seed: int = 0) -> Path:
    """t-SNE of the original model's penultimate features on a seeded subsample of each set,
    coloured by class; forget images drawn as crosses, retain as dots, test as rings."""
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    parts = {
        "retain": (dataset.train_x, dataset.train_y, rng.choice(split.retain, min(per_set, split.retain.size), replace=False)),
        "forget": (dataset.train_x, dataset.train_y, rng.choice(split.forget, min(per_set, split.forget.size), replace=False)),
        "test": (dataset.test_x, dataset.test_y, rng.choice(split.test, min(per_set, split.test.size), replace=False)),
    }
    features, labels, membership = [], [], []
    for name, (x, y, picked) in parts.items():
        features.append(penultimate_features(model, x[picked]))
        labels.append(y[picked])
        membership += [name] * len(picked)
    features, labels, membership = np.concatenate(features), np.concatenate(labels), np.array(membership)
    started = time.perf_counter()
    embedded = TSNE(n_components=2, perplexity=30, init="pca", random_state=seed).fit_transform(features)
    say(f"[dim]t-SNE of {len(features)} feature vectors in {time.perf_counter() - started:.1f}s[/dim]")
    fig, ax = plt.subplots(figsize=(8, 6.5))
    colors = plt.get_cmap("tab10")
    markers = {"retain": ("o", 8), "test": ("$\\circ$", 18), "forget": ("x", 22)}
    for name, (marker, size) in markers.items():
        chosen = membership == name
        ax.scatter(*embedded[chosen].T, c=[colors(c % 10) for c in labels[chosen]], marker=marker, s=size, alpha=0.7, linewidths=0.8)
    for c, class_name in enumerate(dataset.classes):
        ax.scatter([], [], color=colors(c % 10), label=class_name, s=20)
    for name, (marker, size) in markers.items():
        ax.scatter([], [], color="black", marker=marker, s=size * 1.5, label=f"{name} ({(membership == name).sum()})")
    ax.legend(fontsize=7, ncol=2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("t-SNE of the original model's penultimate features")
    return save_figure(fig, path)


def write_eda(dataset: Dataset, split: Split, folder: Path, model=None, seed: int = 0) -> list[Path]:
    """Every exploratory figure under `folder`; the t-SNE needs the original model. Table rows
    get no mean images or sample grid: both draw pixels."""
    paths = [class_distribution(dataset, split, folder / "class-distribution.png")]
    if dataset.is_table:
        say(f"[dim]mean images and forget samples skipped: {dataset.source} is table rows, which have no pixels to draw[/dim]")
    else:
        paths += [mean_images(dataset, split, folder / "mean-images.png"), sample_grid(dataset, split, folder / "forget-samples.png", seed=seed)]
    if model is not None:
        paths.append(tsne_figure(model, dataset, split, folder / "tsne.png", seed=seed))
    return paths
