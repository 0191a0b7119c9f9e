"""The text experiment's budget: how long a facts preset's original and retrained language models
take to train from scratch, and whether the original memorized the people (QA exact match on
trained people ≥ 95%, near the majority-answer rate on held-out people). facts-default's target
on the 2-core CPU: original + retrain ≤ 10 minutes. Models go to a fresh temporary store, so
nothing is reused; `--width`/`--depth` try other sizes against the same corpus.

    python bench/facts_train.py [--preset facts-default] [--seed 0] [--width W] [--depth D]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from unlearnkit.presets import ModelSpec, get_preset
from unlearnkit.text.evaluate import lm_outputs, text_metrics
from unlearnkit.text.run import prepare_text, train_language_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="facts-default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=None, help="model width instead of the preset's")
    parser.add_argument("--depth", type=int, default=None, help="blocks instead of the preset's")
    args = parser.parse_args()
    preset = get_preset(args.preset)
    kwargs = {**preset.model.kwargs, **({"width": args.width} if args.width else {}), **({"depth": args.depth} if args.depth else {})}
    preset = preset.model_copy(update={"model": ModelSpec(name=preset.model.name, kwargs=kwargs)})
    with tempfile.TemporaryDirectory() as store:
        setup = prepare_text(preset, args.seed, cache=store)
        result = {"preset": preset.name, "model": kwargs, "threads": torch.get_num_threads()}
        for role in ("original", "retrain"):
            started = time.perf_counter()
            ref = train_language_model(role, setup, args.seed)
            metrics = text_metrics(lm_outputs(ref.model, setup.data, setup.split))
            result[role] = {"seconds": round(time.perf_counter() - started, 1), "rows": ref.meta["trained_on"],
                            **{k: round(metrics[k], 3) for k in ("qa_forget", "qa_retain", "qa_test", "extraction_forget")}}
        result["parameters"] = sum(p.numel() for p in ref.model.parameters())
        result["total_seconds"] = result["original"]["seconds"] + result["retrain"]["seconds"]
        result["majority_answer_rate"] = round(setup.data.corpus.majority_rate(setup.split.test_people), 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
