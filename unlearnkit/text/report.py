"""What a text run shows: the terminal table and the figures (QA, attacks, losses, relearning)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from unlearnkit.report import plt, recovery_curves_figure, save_figure

COLUMNS = (("QA forget", "qa_forget", "%"), ("QA retain", "qa_retain", "%"), ("QA test", "qa_test", "%"), ("extraction", "extraction_forget", "%"),
           ("perplexity", "perplexity", "f"), ("ε score", "neurips_score", "f"), ("KLoM", "klom", "f"), ("KLoM (smoothed)", "klom_smoothed", "f"), ("seconds", "seconds", "s"),
           ("× retrain", "time_ratio", "f"))
AUDIT_COLUMNS = (("relearn gap", "relearn_gap", "%"), ("int4 QA-forget gap", "int4_forget_gap", "%"))  # shown when --audit ran


def cell(row: dict, key: str, kind: str) -> str:
    value = row.get(key)
    if not isinstance(value, (int, float)):
        return ""
    return f"{100 * value:.1f}" if kind == "%" else f"{value:.0f}" if kind == "s" else f"{value:.3f}"


def text_table(results: dict) -> Table:
    rows, control = results["rows"], results["positive_control"]
    attack = control.get("headline_attack")
    title = (f"QA exact match and extraction in %; held-out people's majority-answer rate {100 * results['majority_answer_rate']:.1f}%; "
             + (f"AUC: the {attack} attack, forgotten people's rows vs test people's [95% CI], compare with retrain" if attack else f"attacks: {control['note']}"))
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for header, _, _ in COLUMNS[:5]:
        table.add_column(header, justify="right")
    table.add_column("attack AUC", justify="right")
    columns = COLUMNS + tuple(column for column in AUDIT_COLUMNS if any(column[1] in row for row in rows))
    for header, _, _ in columns[5:]:
        table.add_column(header, justify="right")
    for row in rows:
        auc = f"{row['attack_auc']:.3f} [{row['attack_auc_ci'][0]:.3f}, {row['attack_auc_ci'][1]:.3f}]" if "attack_auc" in row else ""
        cells = [cell(row, key, kind) for _, key, kind in columns]
        table.add_row(row["name"], *cells[:5], auc, *cells[5:])
    return table


def qa_bars(results: dict, path: Path) -> Path:
    rows = results["rows"]
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.8))
    x = np.arange(len(rows))
    for offset, (label, key) in zip((-0.3, -0.1, 0.1, 0.3), (("QA forget", "qa_forget"), ("QA retain", "qa_retain"), ("QA test", "qa_test"), ("extraction", "extraction_forget"))):
        ax.bar(x + offset, [100 * r[key] for r in rows], width=0.2, label=label)
    ax.axhline(100 * results["majority_answer_rate"], color="grey", linestyle=":", label="majority answer (held out)")
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("%")
    ax.set_title("What each model still knows (compare with retrain)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars reach 100% in every column
    return save_figure(fig, path)


def attack_bars(results: dict, attacks: dict, path: Path) -> Path:
    rows = results["rows"]
    names = list(next(iter(attacks.values())))
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.8))
    x = np.arange(len(rows))
    for i, attack in enumerate(names):
        values = np.array([attacks[r["name"]][attack].values["auc"] for r in rows])
        low = np.array([attacks[r["name"]][attack].intervals["auc"][0] for r in rows])
        high = np.array([attacks[r["name"]][attack].intervals["auc"][1] for r in rows])
        ax.errorbar(x + (i - 1) * 0.2, values, yerr=[values - low, high - values], fmt="o", capsize=3, label=attack + ("" if results["positive_control"]["signal"][attack] else " (no signal)"))
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("AUC, forget vs test rows (95% CI)")
    ax.set_title("Membership attacks (retrain is the target, not 0.5)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: points reach every corner
    return save_figure(fig, path)


def loss_grid(outputs: dict, path: Path) -> Path:
    names = list(outputs)
    cols = min(len(names), 4)
    fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols, figsize=(3.4 * cols, 2.6 * ((len(names) + cols - 1) // cols)), squeeze=False)
    split = next(iter(outputs.values())).split
    # The scale is the retrained model's (twice its 99th percentile), so that a destroyed model's
    # losses (gradient ascent: 25 nats/byte) do not squash every other panel into one bar;
    # larger losses are counted in the last bin.
    reference = outputs.get("retrain", next(iter(outputs.values())))
    upper = 2 * np.percentile(-reference.mean_logprob(np.r_[split.forget, split.test]), 99)
    bins = np.linspace(0, upper, 40)
    for ax, name in zip(axes.flat, names):
        for label, rows in (("test people", split.test), ("forgotten people", split.forget)):
            ax.hist(np.minimum(-outputs[name].mean_logprob(rows), upper), bins=bins, alpha=0.6, label=label, weights=np.full(len(rows), 1 / len(rows)))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"row loss (nats/byte; last bin ≥ {upper:.1f})", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def write_text_report(out: Path, results: dict, outputs: dict, attacks: dict) -> list[Path]:
    Console(width=None if sys.stdout.isatty() else 200).print(text_table(results))
    folder = out / "figures"
    figures = [qa_bars(results, folder / "qa.png"), attack_bars(results, attacks, folder / "attacks.png"), loss_grid(outputs, folder / "losses.png")]
    relearn = results.get("robustness", {}).get("relearn", {})
    if "models" in relearn:
        figures.append(text_relearn_figure(relearn, folder / "relearn.png"))
    return figures


def text_relearn_figure(audit: dict, path: Path) -> Path:
    """The share of the forgotten people's measured rows (other attributes) whose value the model
    reproduces while it is fine-tuned on some of their attributes: each model's mean curve, the
    retrained model's in black."""
    options = audit["options"]
    curves = {name: entry["curves"] for name, entry in audit["models"].items()}
    return recovery_curves_figure([("fine-tuned on some of the forgotten people's attributes", curves)],
                                  f"values reproduced, {audit['measured_rows']} measured rows (%)",
                                  f"Relearning attack: {options['steps']} AdamW steps on {audit['relearn_rows']} rows, mean of {options['seeds']} seeds", path)
