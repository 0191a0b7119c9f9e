"""`unlearnkit forget` on a facts language model: a request file of subject ids (people) goes in;
the unlearned model and a before/after report come out. As for images, no retrained model is
needed, and the report says what that leaves unproven."""

from __future__ import annotations

import time
from pathlib import Path

from unlearnkit.data.scenarios import file_sha256
from unlearnkit.errors import UnlearnkitError
from unlearnkit.fileio import atomic_write_bytes, atomic_write_json, sha256_file, write_manifest
from unlearnkit.methods import make_config, run_method
from unlearnkit.presets import get_preset
from unlearnkit.progress import say
from unlearnkit.store import load_model, save_model
from unlearnkit.text.evaluate import lm_outputs, membership_attacks, text_metrics
from unlearnkit.text.run import prepare_text, text_task
from unlearnkit.train import default_device

LIMITS = (
    "Without a model retrained without these people, this report cannot show that the result is what retraining would have "
    "given. It shows how QA about the forgotten people, extraction of their secrets and membership attacks (their rows vs rows "
    "of people never trained on) moved. For evidence against retraining, run `unlearnkit run --preset PRESET --forget file:REQUESTS.csv`."
)
SHOWN = ("qa_forget", "qa_retain", "qa_test", "extraction_forget", "perplexity")


def forget_people(*, model: str | Path, meta: dict, requests: str | Path, method: str, config: dict | None, seed: int, out: str | Path) -> dict:
    started = time.perf_counter()
    model_path, out = Path(model), Path(out)
    if not isinstance(meta.get("preset_config"), dict):
        raise UnlearnkitError(f"{model_path}'s sidecar does not record the facts preset it was trained with; give a model that `unlearnkit run --preset facts-…` made")
    chosen = make_config(method, config, "text")
    setup = prepare_text(get_preset(meta["preset_config"]), seed, forget=f"file:{requests}")
    if setup.data.fingerprint != meta.get("data_fingerprint"):
        raise UnlearnkitError(f"{model_path} was trained on another corpus (fingerprint {str(meta.get('data_fingerprint'))[:12]}…) than its preset generates now")
    original = load_model(model_path, default_device())
    say(f"[bold]unlearnkit forget[/bold]: {setup.split.forget_people.size} people ({setup.split.forget.size} rows), method {method}")
    before_outputs = lm_outputs(original, setup.data, setup.split)
    result = run_method(method, original, text_task(setup, original, seed), chosen, checkpoint=out / "model.checkpoint.safetensors", modality="text")
    after_outputs = lm_outputs(result.model, setup.data, setup.split)
    before, after = text_metrics(before_outputs), text_metrics(after_outputs)
    attacks_before, attacks_after = membership_attacks(before_outputs, seed), membership_attacks(after_outputs, seed)
    inputs = {"model": {"path": str(model_path), "sha256": sha256_file(model_path)},
              "requests": {"path": str(requests), "sha256": file_sha256(requests), "people": setup.split.forget_people.tolist(), "rows": int(setup.split.forget.size)}}
    model_out = save_model(result.model, out / "model.safetensors", role="unlearned", modality="text", method=method, config=result.config.model_dump(), seed=seed,
                           inputs=inputs, preset_config=meta["preset_config"], data_fingerprint=setup.data.fingerprint, timings={"unlearn_seconds": result.seconds})
    report = {
        **inputs, "modality": "text", "method": method, "config": result.config.model_dump(), "output_model": str(model_out),
        "before": before, "after": after,
        "attacks": {name: {"signal": bool(attacks_before[name].intervals["auc"][0] > 0.5), "before": attacks_before[name].to_json(), "after": attacks_after[name].to_json()}
                    for name in attacks_before},
        "unlearn_seconds": result.seconds, "total_seconds": time.perf_counter() - started, "what_this_shows": LIMITS,
    }
    atomic_write_json(out / "report.json", report)
    atomic_write_bytes(out / "report.md", markdown(report).encode())
    write_manifest(out)
    return report


def markdown(report: dict) -> str:
    lines = [f"# Deletion request: {len(report['requests']['people'])} people ({report['requests']['rows']} rows), method {report['method']}", "",
             f"Input model `{report['model']['path']}` (sha256 {report['model']['sha256'][:16]}…); unlearned model `{report['output_model']}` in {report['unlearn_seconds']:.1f} s.", "",
             "| measure | before | after |", "|---|---|---|"]
    for key in SHOWN:
        b, a = report["before"][key], report["after"][key]
        lines.append(f"| {key} | {b:.3f} | {a:.3f} |" if key == "perplexity" else f"| {key} | {100 * b:.1f}% | {100 * a:.1f}% |")
    for name, attack in report["attacks"].items():
        cells = [f"{s['auc']['value']:.3f} [{s['auc']['ci95'][0]:.3f}, {s['auc']['ci95'][1]:.3f}]" for s in (attack["before"], attack["after"])]
        lines.append(f"| {name} attack AUC{'' if attack['signal'] else ' (NO SIGNAL before)'} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines + ["", f"What this shows: {report['what_this_shows']}", ""])
