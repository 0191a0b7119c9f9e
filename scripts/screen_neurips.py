"""The NeurIPS 2023 score of a method's variants, and why each scores as it does, without the rest
of `--evidence full` (no U-LiRA shadows, no population attacks): N retrained models and, per
variant, N unlearned models (the method with seeds seed … seed + N − 1 on the same original),
all through the store, so a variant scored here costs nothing when `unlearnkit run --evidence
full` meets it later, and the retrained models are shared with it.

    python scripts/screen_neurips.py erase-repair --variant "" --variant "noise=0.4" --variant "noise=0.4,distill=0" --n 8

Each `--variant` is a comma list of FIELD=VALUE over the preset's config of the method (an empty
one is the preset's config). The table: the score and F; the share of forget examples at the ε
cap (told apart perfectly) and the median ε; where the unlearned confidences sit against the
retrained ones (median offset of the means in retrained sds, the share above) and how wide they
spread (median ratio of sds, the share narrower); retain and test accuracy; seconds per model
made against the retrained model's training time."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluate.epsilon import neurips_score, score_breakdown
from unlearnkit.evidence import Ledger, retrained_ensemble, unlearned_ensemble
from unlearnkit.experiment import prepare
from unlearnkit.fileio import atomic_write_json
from unlearnkit.methods import make_config, parse_value
from unlearnkit.presets import get_preset
from unlearnkit.progress import say
from unlearnkit.reference import train_reference
from unlearnkit.run import method_settings


def parse_variant(text: str) -> dict:
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        field, equals, value = item.partition("=")
        if not equals or not field:
            raise UnlearnkitError(f"--variant item '{item}' is not FIELD=VALUE, e.g. --variant 'noise=0.4,distill=0'")
        values[field] = parse_value(value)
    return values


def screen(method: str, variants: list[str], *, n: int, seed: int, preset: str, data, cache, forget) -> list[dict]:
    chosen = get_preset(preset)
    base = method_settings(chosen, [method], None).get(method, {})
    configs = [(text, make_config(method, {**base, **parse_variant(text)})) for text in variants]  # every variant validated before any data is read
    setup = prepare(data=data, preset=chosen, seed=seed, cache=cache, forget=forget)
    original = train_reference("original", setup.dataset, setup.split, setup.preset, seed, setup.store)
    retrain_seconds = train_reference("retrain", setup.dataset, setup.split, setup.preset, seed, setup.store).seconds
    say(f"{n} retrained models …")
    retrained = retrained_ensemble(setup, seed, n, Ledger())
    rows = []
    for text, config in configs:
        say(f"[bold]{method}[/bold] {text or '(preset config)'}: {n} unlearned models …")
        ledger, started = Ledger(), time.perf_counter()
        unlearned = unlearned_ensemble(method, config, original, setup, seed, n, ledger, first=None)
        score = neurips_score(unlearned.forget_confidence, retrained.forget_confidence, retain_acc=(unlearned.retain_acc, retrained.retain_acc), test_acc=(unlearned.test_acc, retrained.test_acc))
        breakdown = score_breakdown(score.pop("epsilon"), unlearned.forget_confidence, retrained.forget_confidence)
        rows.append({
            "variant": text, "config": config.model_dump(), "score": score["score"], "forgetting_quality": score["forgetting_quality"],
            "at_cap_share": breakdown["at_cap_share"], "epsilon_median": breakdown["epsilon_median"], **breakdown["shape"],
            "retain_acc": unlearned.retain_acc, "test_acc": unlearned.test_acc, "forget_acc": unlearned.forget_acc,
            "retrained_retain_acc": retrained.retain_acc, "retrained_test_acc": retrained.test_acc, "retrained_forget_acc": retrained.forget_acc,
            "models_made": ledger.trained, "time_ratio": ledger.seconds / ledger.trained / retrain_seconds if ledger.trained else None,
            "seconds": time.perf_counter() - started,
        })
        last = rows[-1]
        say(f"  score {last['score']:.3f} (F {last['forgetting_quality']:.3f}), {100 * last['at_cap_share']:.1f}% at the ε cap, "
            f"offset {last['offset_median']:+.2f} sd, spread ratio {last['spread_ratio_median']:.2f}, test {100 * last['test_acc']:.1f}%, forget {100 * last['forget_acc']:.1f}%")
    return rows


def table(method: str, rows: list[dict]) -> str:
    head = ["variant", "score", "F", "at ε cap", "median ε", "offset (sd)", "above", "spread ratio", "narrower", "retain", "test", "forget", "× retrain per model"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = f"{r['time_ratio']:.3f}" if r["time_ratio"] is not None else "stored"
        lines.append("| " + " | ".join([
            f"{method} {r['variant']}".strip(), f"{r['score']:.3f}", f"{r['forgetting_quality']:.3f}", f"{100 * r['at_cap_share']:.1f}%",
            f"{r['epsilon_median']:.2f}", f"{r['offset_median']:+.2f}", f"{100 * r['above_share']:.0f}%", f"{r['spread_ratio_median']:.2f}",
            f"{100 * r['narrower_share']:.0f}%", f"{100 * r['retain_acc']:.1f}", f"{100 * r['test_acc']:.1f}", f"{100 * r['forget_acc']:.1f}", ratio,
        ]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("method")
    parser.add_argument("--variant", action="append", help="FIELD=VALUE[,FIELD=VALUE...] over the preset's config ('' for the preset's own); repeatable")
    parser.add_argument("--n", type=int, default=8, help="models per side (at least 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--data", default=None, help="the dataset (default: UNLEARNKIT_DATA, else the official CIFAR-10 download)")
    parser.add_argument("--cache", default=None, help="the store's folder (default: UNLEARNKIT_CACHE)")
    parser.add_argument("--forget", default=None, help="a forget scenario, as `unlearnkit run --forget`")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    if args.n < 2:
        parser.error(f"--n {args.n}: the score needs at least 2 models per side")
    try:
        rows = screen(args.method, args.variant or [""], n=args.n, seed=args.seed, preset=args.preset, data=args.data, cache=args.cache, forget=args.forget)
    except UnlearnkitError as error:
        raise SystemExit(f"error: {error}") from None
    print(table(args.method, rows))
    if args.out:
        atomic_write_json(args.out, {"method": args.method, "n": args.n, "seed": args.seed, "preset": args.preset, "rows": rows})


if __name__ == "__main__":
    main()
