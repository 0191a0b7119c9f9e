"""`unlearnkit forget`: the production path. A deployed model and a deletion request go in; an
unlearned model (with a sidecar that ties it to both) and a short verification report come out.
No retrained model is needed, which is the point, and also the limit of what the report shows."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from unlearnkit.data import load_dataset
from unlearnkit.data.scenarios import Scenario, file_sha256, read_requests
from unlearnkit.data.splits import make_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.experiment import make_task
from unlearnkit.evaluate import per_example_loss, simple_mia
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json, sha256_file, write_manifest
from unlearnkit.methods import make_config, run_method
from unlearnkit.progress import say
from unlearnkit.report import CONTROL_MARGIN
from unlearnkit.store import load_model, read_sidecar, save_model
from unlearnkit.train import Recipe, default_device, predict_logits

LIMITS = (
    "Without a model retrained without these images, this report cannot show that the result is what "
    "retraining would have given. It shows how the model's accuracy on the forgotten images, and a "
    "population membership attack's view of them (forgotten vs test images), moved; an attack score "
    "near 0.5 means this attack cannot tell them from unseen images, not that no attack can. For "
    "evidence against retraining, run `unlearnkit run --forget file:REQUESTS.csv`."
)


def verification(model, dataset, forget: np.ndarray, retain: np.ndarray, test: np.ndarray, seed: int) -> dict:
    """Accuracy on forget, a retain sample and test, and the kit's attack (forget vs test losses)."""
    parts = {"forget": (dataset.train_x, dataset.train_y, forget), "retain": (dataset.train_x, dataset.train_y, retain), "test": (dataset.test_x, dataset.test_y, test)}
    row, losses = {}, {}
    for name, (x, y, indices) in parts.items():
        logits = predict_logits(model, x[indices]).numpy()
        row[f"{name}_acc"] = float((logits.argmax(1) == y[indices]).mean())
        losses[name] = per_example_loss(logits, y[indices])
    row["mia"] = simple_mia(losses["forget"], losses["test"], seed=seed) if len(forget) >= 2 else float("nan")
    return row


def forget_request(
    *, model: str | Path, requests: str | Path, method: str, data=None, subjects=None, out: str | Path = "runs/forget",
    config: dict | None = None, seed: int = 0, retain_sample: int = 10_000,
) -> dict:
    started = time.perf_counter()
    model_path, out = Path(model), Path(out)
    config = make_config(method, config)  # a bad method or config fails before anything is read
    dataset = load_dataset(data)
    device = default_device()
    original = load_model(model_path, device)
    meta = read_sidecar(model_path)
    if (classes := original.fc.out_features) != dataset.num_classes:
        raise UnlearnkitError(f"model {model_path} predicts {classes} classes but the dataset has {dataset.num_classes}; give the data the model was trained on")
    n_train, n_heldout = len(dataset.train_y), len(dataset.test_y)
    requested = read_requests(requests, n_train, n_heldout, subjects)
    scenario = Scenario("file", f"file:{Path(requests).name}", requested=tuple(requested))
    split = make_split(dataset.train_y, n_heldout, forget=scenario, seed=seed, data_fingerprint=dataset.fingerprint, classes=dataset.classes)
    say(f"[bold]unlearnkit forget[/bold]: {split.forget.size} requested images, {split.retain.size} retained, method {method}")

    rng = np.random.default_rng(seed)
    retain_probe = np.sort(rng.choice(split.retain, min(retain_sample, split.retain.size), replace=False))
    before = verification(original, dataset, split.forget, retain_probe, split.test, seed)

    recipe = Recipe(**meta["recipe"]) if isinstance(meta.get("recipe"), dict) else Recipe()
    task = make_task(dataset, split, original, recipe, seed)
    result = run_method(method, original, task, config, checkpoint=out / "model.checkpoint.safetensors")
    after = verification(result.model, dataset, split.forget, retain_probe, split.test, seed)

    control = before["mia"] - 0.5 >= CONTROL_MARGIN
    inputs = {
        "model": {"path": str(model_path), "sha256": sha256_file(model_path)},
        "requests": {"path": str(requests), "sha256": file_sha256(requests), "images": int(split.forget.size)},
    }
    if subjects is not None:
        inputs["subjects"] = {"path": str(subjects), "sha256": file_sha256(subjects)}
    model_out = save_model(
        result.model, out / "model.safetensors", role="unlearned", method=method, config=result.config.model_dump(),
        seed=seed, inputs=inputs, data_fingerprint=dataset.fingerprint, recipe=recipe.model_dump(),
        timings={"unlearn_seconds": result.seconds},
    )
    report = {
        **inputs,
        "method": method,
        "config": result.config.model_dump(),
        "output_model": str(model_out),
        "retain_sample": int(retain_probe.size),
        "test_images": int(split.test.size),
        "before": before,
        "after": after,
        "positive_control": {
            "passed": bool(control),
            "note": f"the attack scores {before['mia']:.3f} on the input model, {'at least' if control else 'less than'} {CONTROL_MARGIN} above chance: "
            + ("it could tell the requested images from test images before unlearning" if control else "NO SIGNAL: it could not tell them apart even before unlearning, so its score after proves nothing"),
        },
        "unlearn_seconds": result.seconds,
        "total_seconds": time.perf_counter() - started,
        "what_this_shows": LIMITS,
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_bytes(out / "report.md", markdown(report).encode())
    write_manifest(out)
    return report


def markdown(report: dict) -> str:
    rows = [("forget accuracy", "forget_acc", True), ("retain accuracy (sample)", "retain_acc", True), ("test accuracy", "test_acc", True), ("membership attack (forget vs test)", "mia", False)]
    lines = [
        f"# Deletion request: {report['requests']['images']} images, method {report['method']}",
        "",
        f"Input model `{report['model']['path']}` (sha256 {report['model']['sha256'][:16]}…); request file sha256 {report['requests']['sha256'][:16]}…; "
        f"unlearned model `{report['output_model']}` in {report['unlearn_seconds']:.1f} s.",
        "",
        "| measure | before | after |",
        "|---|---|---|",
    ]
    for title, key, percent in rows:
        b, a = report["before"][key], report["after"][key]
        lines.append(f"| {title} | {100 * b:.1f}% | {100 * a:.1f}% |" if percent else f"| {title} | {b:.3f} | {a:.3f} |")
    lines += ["", f"Positive control: {report['positive_control']['note']}.", "", f"What this shows: {report['what_this_shows']}", ""]
    return "\n".join(lines)

