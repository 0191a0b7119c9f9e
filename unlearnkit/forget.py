"""`unlearnkit forget`: the production path. A deployed model and a deletion request go in; an
unlearned model (with a sidecar that ties it to both) and a short verification report come out.
No retrained model is needed, which is the point, and also the limit of what the report shows."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data import load_dataset
from unlearnkit.data.scenarios import Scenario, file_sha256, read_requests
from unlearnkit.data.splits import make_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.data.splits import Split
from unlearnkit.evaluate import mia_skip_reason, model_outputs, simple_mia_or_nan
from unlearnkit.evaluate.attacks import KIT_ATTACK_TWIN
from unlearnkit.evaluate.population import Probe, population_attacks
from unlearnkit.evaluate.stats import has_signal
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json, sha256_file, write_manifest
from unlearnkit.methods import Task, make_config, run_method
from unlearnkit.models.interface import head
from unlearnkit.progress import say
from unlearnkit.store import load_model, read_sidecar, save_model, sidecar_path
from unlearnkit.train import Recipe, default_device

LIMITS = (
    "Without a model retrained without these images, this report cannot show that the result is what "
    "retraining would have given. It shows how the model's accuracy on the forgotten images, and a "
    "population membership attack's view of them (forgotten vs test images), moved; an attack score "
    "near 0.5 means this attack cannot tell them from unseen images, not that no attack can. For "
    "evidence against retraining, run `unlearnkit run --forget file:REQUESTS.csv`."
)


def verification(model, dataset, probe: Split, seed: int) -> tuple[dict, dict]:
    """Accuracy on forget, a retain sample and test, the kit's attack (forget vs test losses),
    and every population attack with its intervals, from one forward pass over those images.
    Attacks that cannot run on so few images are left out (`skipped` says why)."""
    outputs = model_outputs(model, dataset, probe)
    row = {f"{part}_acc": outputs.accuracy(part) for part in ("forget", "retain", "test")}
    row["mia"] = simple_mia_or_nan(outputs.losses("forget"), outputs.losses("test"), seed=seed)
    attacks = population_attacks(outputs, Probe.of(outputs, seed), seed) if len(probe.forget) >= 2 else {}
    return row, attacks


def backdoor_report(original, unlearned, dataset, split: Split, target: int) -> dict:
    from unlearnkit.evaluate import backdoor_rates

    test_x, test_y = dataset.test_x[split.test], dataset.test_y[split.test]
    return {"target": target, "target_name": dataset.classes[target], "before": backdoor_rates(original, test_x, test_y, target),
            "after": backdoor_rates(unlearned, test_x, test_y, target)}


def skipped(forget: int, test: int) -> list[str]:
    """What the report could not compute on a request of `forget` images, and why."""
    reasons = [reason] if (reason := mia_skip_reason(forget, test)) else []
    if forget < 2:
        reasons.append(f"{forget} requested image: the population attacks need at least 2 members, so none was run")
    return reasons


def auc_cell(score: dict) -> str:
    """'0.612 [0.598, 0.626]' from an attack score's JSON."""
    low, high = score["auc"]["ci95"]
    return f"{score['auc']['value']:.3f} [{low:.3f}, {high:.3f}]"


def attack_report(before: dict, after: dict) -> dict:
    """Per attack, AUC on forget vs test before and after, and its positive control
    (`stats.has_signal`: without a retrained model, against chance)."""
    return {
        name: {"signal": has_signal(result.forget), "before": result.forget.to_json(), "after": after[name].forget.to_json()}
        for name, result in before.items()
    }


def forget_request(
    *, model: str | Path, requests: str | Path, method: str, data=None, subjects=None, out: str | Path = "runs/forget",
    config: dict | None = None, seed: int = 0, retain_sample: int = 10_000, model_factory: str | None = None, model_kwargs: dict | None = None,
) -> dict:
    """`model` is a .safetensors file: saved by unlearnkit (its sidecar says how to rebuild it),
    or any other model's weights with `model_factory` ('package.module:function', called with
    `model_kwargs`) that builds the architecture."""
    started = time.perf_counter()
    model_path, out = Path(model), Path(out)
    if sidecar_path(model_path).is_file() and (meta := read_sidecar(model_path)).get("modality") == "text":
        from unlearnkit.text.forget import forget_people

        return forget_people(model=model_path, meta=meta, requests=requests, method=method, config=config, seed=seed, out=out)
    config = make_config(method, config)  # a bad method or config fails before anything is read
    dataset = load_dataset(data)
    device = default_device()
    original = load_model(model_path, device, factory=model_factory, factory_kwargs=model_kwargs)
    meta = read_sidecar(model_path) if sidecar_path(model_path).is_file() else {}
    if (classes := head(original).out_features) != dataset.num_classes:
        raise UnlearnkitError(f"model {model_path} predicts {classes} classes but the dataset has {dataset.num_classes}; give the data the model was trained on")
    n_train, n_heldout = len(dataset.train_y), len(dataset.test_y)
    requested = read_requests(requests, n_train, n_heldout, subjects)
    scenario = Scenario("file", f"file:{Path(requests).name}", requested=tuple(requested))
    split = make_split(dataset.train_y, n_heldout, forget=scenario, seed=seed, data_fingerprint=dataset.fingerprint, classes=dataset.classes)
    say(f"[bold]unlearnkit forget[/bold]: {split.forget.size} requested images, {split.retain.size} retained, method {method}")

    recipe = Recipe(**meta["recipe"]) if isinstance(meta.get("recipe"), dict) else Recipe()
    result, verified = unlearn_and_verify(original, dataset, split, method=method, config=config, recipe=recipe, seed=seed,
                                          retain_sample=retain_sample, checkpoint=out / "model.checkpoint.safetensors")
    inputs = {
        "model": {"path": str(model_path), "sha256": sha256_file(model_path)},
        "requests": {"path": str(requests), "sha256": file_sha256(requests), "images": int(split.forget.size)},
    }
    if subjects is not None:
        inputs["subjects"] = {"path": str(subjects), "sha256": file_sha256(subjects)}
    model_out = save_model(
        result.model, out / "model.safetensors", factory=model_factory, factory_kwargs=model_kwargs, role="unlearned", method=method, config=result.config.model_dump(),
        seed=seed, inputs=inputs, data_fingerprint=dataset.fingerprint, recipe=recipe.model_dump(),
        timings={"unlearn_seconds": result.seconds},
    )
    report = {
        **inputs,
        "method": method,
        "output_model": str(model_out),
        **verified,
        "total_seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_bytes(out / "report.md", markdown(report).encode())
    write_manifest(out)
    return report


def unlearn_and_verify(original, dataset, split: Split, *, method: str, config, recipe: Recipe, seed: int, retain_sample: int = 10_000,
                       checkpoint: Path | None = None, relearn=None, backdoor_target: int | None = None):
    """Unlearn `split.forget` from `original` with `method`, and measure before and after on the
    forgotten images, a sample of `retain_sample` retained ones and the test images: the
    unlearning result and the report's body (accuracies, attacks with their positive control,
    what could not be computed, and what this evidence cannot show). With `relearn` (a
    `RelearnOptions`), also the requested images' accuracy after the relearning attack beside
    unseen test images' under the same attack. With `backdoor_target` (a class index), also the
    backdoor's attack success rate on triggered test images before and after."""
    rng = np.random.default_rng(seed)
    retain_probe = np.sort(rng.choice(split.retain, min(retain_sample, split.retain.size), replace=False))
    probe = dataclasses.replace(split, retain=retain_probe)  # the images the report looks at
    before, attacks_before = verification(original, dataset, probe, seed)
    task = Task.from_split(dataset, split, original, recipe, seed)
    result = run_method(method, original, task, config, checkpoint=checkpoint)
    after, attacks_after = verification(result.model, dataset, probe, seed)
    attacks = attack_report(attacks_before, attacks_after)
    control = attacks.get(KIT_ATTACK_TWIN, {}).get("signal", False)
    relearned = None
    if relearn is not None:
        from unlearnkit.evaluate.relearn import unseen_after_relearning

        device = next(result.model.parameters()).device
        tensors = lambda x, y, rows: (torch.from_numpy(x[rows]).to(device), torch.from_numpy(y[rows]).to(device))  # noqa: E731
        relearned = unseen_after_relearning(result.model, *tensors(dataset.train_x, dataset.train_y, split.forget),
                                            *tensors(dataset.test_x, dataset.test_y, split.test), relearn, seed)
    return result, {
        "config": result.config.model_dump(),
        "retain_sample": int(retain_probe.size),
        "test_images": int(split.test.size),
        "before": before,
        "after": after,
        "positive_control": {
            "passed": bool(control),
            "attack": KIT_ATTACK_TWIN,
            "note": ("not run: too few requested images for any attack" if not attacks else
                     f"the {KIT_ATTACK_TWIN} attack's AUC on the input model is "
                     + ("above chance (one-sided 95%): it could tell the requested images from test images before unlearning" if control
                        else "not above chance: NO SIGNAL, it could not tell them apart even before unlearning, so its score after proves nothing")),
        },
        "attacks": attacks,
        **({"relearn": relearned} if relearn is not None else {}),
        **({"backdoor": backdoor_report(original, result.model, dataset, split, backdoor_target)} if backdoor_target is not None else {}),
        "skipped": skipped(int(split.forget.size), int(split.test.size)),
        "unlearn_seconds": result.seconds,
        "what_this_shows": LIMITS,
    }


def score_cell(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


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
        lines.append(f"| {title} | {100 * b:.1f}% | {100 * a:.1f}% |" if percent else f"| {title} | {score_cell(b)} | {score_cell(a)} |")
    for name, attack in report["attacks"].items():
        lines.append(f"| {name} attack AUC, 95% interval{'' if attack['signal'] else ' (NO SIGNAL before unlearning)'} | {auc_cell(attack['before'])} | {auc_cell(attack['after'])} |")
    lines += ["", f"Positive control: {report['positive_control']['note']}.", ""]
    lines += [f"Not computed: {reason}." for reason in report["skipped"]]
    lines += ["", f"What this shows: {report['what_this_shows']}", ""]
    return "\n".join(lines)

