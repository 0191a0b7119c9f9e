"""What a run shows people: the terminal table, results.json and the figures."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.table import Table  # noqa: E402

from unlearnkit.evaluate import Outputs  # noqa: E402
from unlearnkit.fileio import atomic_write_bytes  # noqa: E402

ACCURACY_COLUMNS = ("train_acc", "test_acc", "retain_acc", "forget_acc", "val_acc")


# present when whole classes are forgotten (see unlearnkit.evaluate.metrics)
CLASSWISE_COLUMNS = ("forget_class_test_acc", "other_class_test_acc")


def gap(value: float, reference: float, points: bool = True) -> str:
    delta = (value - reference) * (100 if points else 1)
    return f"{delta:+.1f}" if points else f"{delta:+.3f}"


def evidence_cell(column: str, row: dict, evidence: dict | None) -> str:
    if column == "AUC":
        low, high = row["attack_auc_ci"]
        return f"{row['attack_auc']:.3f} [{low:.3f}, {high:.3f}]"
    if column == "JS":
        return f"{row['js_forget']:.3f}"
    if column == "U-LiRA AUC":
        if "ulira_auc" not in row:
            return ""
        no_signal = evidence and not evidence["signal"].get("u-lira", True)
        return f"{row['ulira_auc']:.3f}" + ((" NO SIGNAL" if row["name"] == "original" else " (no signal)") if no_signal else "")
    if column == "backdoor ASR":
        if "backdoor_asr" not in row:
            return ""
        low, high = row["backdoor_asr_ci"]
        return f"{row['backdoor_asr']:.3f} [{low:.3f}, {high:.3f}]"
    if column == "confusion":
        if "confusion_test" not in row:
            return ""
        interval = row.get("confusion_test_ci")  # runs made before it was recorded have none
        return f"{100 * row['confusion_test']:.1f}%" + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else "")
    if column == "relearn gap":
        interval = row.get("relearn_gap_ci95")
        held = {True: "", False: " NOT HELD", None: ""}[row.get("relearn_held")]
        return f"{100 * row['relearn_gap']:+.1f}" + (f" [{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]" if interval else "") + held
    if column == "int4 forget gap":
        return f"{100 * row['int4_forget_gap']:+.1f}"
    if column in ("KLoM", "KLoM (smoothed)"):
        key = "klom" if column == "KLoM" else "klom_smoothed"
        return f"{row[key]:.3f}" if row.get(key) is not None else ""
    return f"{row['neurips_score']:.3f}" if "neurips_score" in row else ""


def results_table(rows: list[dict], control: dict, evidence: dict | None = None) -> Table:
    reference = next(row for row in rows if row["name"] == "retrain")
    attack = (evidence or {}).get("headline_attack")
    title = ("accuracy in %, (gap to retrain in points); MIA 0.5 = chance, compare with retrain; "
             "avg gap = mean |Δ| to retrain over forget, retain, test accuracy and MIA (lower is better)")
    if evidence:
        title += (f"; AUC: the {attack} attack on forget vs test [95% CI], compare with retrain" if attack else f"; {evidence.get('note') or 'NO SIGNAL from any population attack'}")
        title += "; JS: Jensen–Shannon divergence to retrain on forget (nats)"
    if any("relearn_gap" in row for row in rows):
        title += "; relearn gap: mean accuracy on the measured forget examples during the relearning attack minus the retrained model's, in points [95% CI over seeds]; NOT HELD: the interval above 2 points under an attack"
    if any("int4_forget_gap" in row for row in rows):
        title += "; int4 forget gap: forget accuracy with 4-bit weights minus the retrained model's with 4-bit weights"
    table = Table(title=title, title_justify="left")
    accuracy_columns = ACCURACY_COLUMNS + tuple(key for key in CLASSWISE_COLUMNS if key in reference)
    titles = {"forget_class_test_acc": "test, forgotten classes", "other_class_test_acc": "test, other classes"}
    extra = [c for c, key in (("AUC", "attack_auc"), ("JS", "js_forget"), ("U-LiRA AUC", "ulira_auc"), ("NeurIPS", "neurips_score"), ("KLoM", "klom"), ("KLoM (smoothed)", "klom_smoothed"),
                                    ("backdoor ASR", "backdoor_asr"), ("confusion", "confusion_test"), ("relearn gap", "relearn_gap"), ("int4 forget gap", "int4_forget_gap"))
             if any(key in row for row in rows)]
    for column in ("model", *(titles.get(key, key.removesuffix("_acc")) for key in accuracy_columns), "MIA", *extra, "avg gap", "seconds", "× retrain"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        is_method = row["name"] not in ("original", "retrain")
        cells = []
        for key in accuracy_columns:
            cell = f"{100 * row[key]:.1f}"
            cells.append(f"{cell} ({gap(row[key], reference[key])})" if is_method else cell)
        mia = f"{row['mia']:.3f}" + (f" ({gap(row['mia'], reference['mia'], points=False)})" if is_method else "")
        if row["name"] == "original" and not control["passed"]:
            mia += " NO SIGNAL"
        if np.isnan(row["mia"]):
            mia = "n/a"
        name = row["name"] + (" (reference)" if row["name"] == "retrain" else "")
        table.add_row(name, *cells, mia, *(evidence_cell(column, row, evidence) for column in extra), f"{row['avg_gap']:.3f}", f"{row['seconds']:.1f}", f"{row['time_ratio']:.3f}")
    return table


def save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def loss_histogram(name: str, outputs: Outputs, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    floor = 1e-8
    forget, test = outputs.losses("forget"), outputs.losses("test")
    bins = np.logspace(np.log10(floor), np.log10(max(forget.max(), test.max(), 1.0) + 1), 60)
    # fractions per bin, not densities: on log-spaced bins a density would favour the narrow ones
    for label, values in (("test", test), ("forget", forget)):
        weights = np.full(len(values), 1 / len(values))
        ax.hist(np.maximum(values, floor), bins=bins, weights=weights, alpha=0.6, label=f"{label} (n={len(values)})")
    ax.set_xscale("log")
    ax.set_xlabel(f"per-example cross-entropy loss (log scale, floored at {floor:g})")
    ax.set_ylabel("fraction of examples")
    ax.set_title(f"{name}: forget vs test losses")
    ax.legend()
    return save_figure(fig, path)


def role_colors(names: list[str]) -> list[str]:
    """The original red, the retrained model green, every method blue."""
    return ["tab:red" if n == "original" else "tab:green" if n == "retrain" else "tab:blue" for n in names]


def mia_bars(rows: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 2, 3.5))
    names = [row["name"] for row in rows]
    values = [row["mia"] for row in rows]
    colors = role_colors(names)
    ax.bar(names, values, color=colors)
    retrain = next(row["mia"] for row in rows if row["name"] == "retrain")
    ax.axhline(retrain, color="tab:green", linestyle="--", label=f"retrain {retrain:.3f}")
    ax.axhline(0.5, color="grey", linestyle=":", label="chance 0.5")
    ax.set_ylim(0.4, max(0.75, max(values) + 0.03))
    ax.set_ylabel("membership attack accuracy")
    ax.set_title("membership inference (forget vs test): closer to retrain is better")
    ax.legend(loc="upper right")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    return save_figure(fig, path)


def accuracy_bars(rows: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 2, 3.8))
    width = 0.8 / len(ACCURACY_COLUMNS)
    x = np.arange(len(rows))
    for i, key in enumerate(ACCURACY_COLUMNS):
        ax.bar(x + i * width - 0.4 + width / 2, [100 * row[key] for row in rows], width, label=key.removesuffix("_acc"))
    ax.set_xticks(x, [row["name"] for row in rows], rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("accuracy per model and set", pad=22)
    ax.legend(ncol=5, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)  # above the axes: inside, it hid the middle models' bars
    return save_figure(fig, path)


def backdoor_bars(rows: list[dict], path: Path) -> Path:
    """Each model's backdoor success with its 95% interval against the retrained model's interval:
    a bar inside the band matches retraining, one below it has learned to avoid the target."""
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 2, 3.5))
    names = [row["name"] for row in rows]
    rates = np.array([row["backdoor_asr"] for row in rows])
    errors = np.abs(np.array([row["backdoor_asr_ci"] for row in rows]).T - rates)
    colors = role_colors(names)
    ax.bar(names, rates, yerr=errors, color=colors, capsize=3)
    low, high = next(row["backdoor_asr_ci"] for row in rows if row["name"] == "retrain")
    ax.axhspan(low, high, color="tab:green", alpha=0.25, label=f"retrain's 95% interval [{low:.3f}, {high:.3f}]")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("backdoor success (triggered → target)")
    ax.set_title("backdoor removal: inside the retrain's band is best, below it overshoots")
    ax.legend(loc="upper center")
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    return save_figure(fig, path)


def write_figures(rows: list[dict], outputs: dict[str, Outputs], folder: Path) -> list[Path]:
    paths = [loss_histogram(name, out, folder / f"losses-{name}.png") for name, out in outputs.items()]
    paths += [backdoor_bars(rows, folder / "backdoor.png")] if "backdoor_asr" in rows[0] else []
    return paths + [mia_bars(rows, folder / "mia.png"), accuracy_bars(rows, folder / "accuracy.png")]


def roc_figure(name: str, curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> Path:
    """ROC curves on log-log axes, where the low false-positive rates that matter are visible."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    floor = 1e-4
    # dashes differ so that attacks ranking alike (lr-loss and loss-threshold both rank by loss) stay visible
    for (label, (fpr, tpr, auc)), style in zip(curves.items(), ("-", "--", "-.", ":", (0, (5, 1)))):
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=f"{label} (AUC {auc:.3f})", drawstyle="steps-post", linestyle=style)
    ax.plot([floor, 1], [floor, 1], color="grey", linewidth=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate (test images called members)")
    ax.set_ylabel("true positive rate (forget images found)")
    ax.set_title(f"{name}: membership attacks on the forget set")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def epsilon_figure(name: str, eps: np.ndarray, original_loss: np.ndarray, score: dict, path: Path) -> Path:
    finite = np.minimum(eps, 8.0)  # the cap (50) drawn at the plot's edge
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.hist(finite, bins=np.arange(0, 8.5, 0.5), weights=np.full(len(eps), 1 / len(eps)))
    left.set_xlabel("per-example ε (bins of 0.5; the cap of 50 drawn at 8)")
    left.set_ylabel("fraction of forget examples")
    left.set_title(f"{name}: F = {score['forgetting_quality']:.3f}, score {score['score']:.3f}, N = {score['models_per_side'][0]}")
    right.scatter(np.maximum(original_loss, 1e-8), finite, s=3, alpha=0.3)
    right.set_xscale("log")
    right.set_xlabel("the example's loss under the original model (log scale)")
    right.set_ylabel("ε")
    right.set_title("which forget examples stay distinguishable")
    return save_figure(fig, path)


def evidence_figures(evidence, outputs: dict[str, Outputs], folder: Path) -> list[Path]:
    paths = []
    for name in outputs:
        curves = {attack: (*result.forget.roc, result.forget.values["auc"]) for attack, result in evidence.attacks[name].items()}
        if not curves:  # too few forget images for any attack
            continue
        if name in evidence.ulira_scores:
            result = evidence.ulira_scores[name]
            curves["U-LiRA (unlearned vs retrained)" if name != "original" else "U-LiRA (original vs retrained)"] = (*result.roc, result.values["auc"])
        paths.append(roc_figure(name, curves, folder / f"roc-{name}.png"))
    original_loss = outputs["original"].losses("forget")
    for name, eps in evidence.epsilons.items():
        paths.append(epsilon_figure(name, eps, original_loss, evidence.per_model[name]["neurips"], folder / f"epsilon-{name}.png"))
    return paths


def curve_style(name: str, methods: list[str]) -> dict:
    """The retrained model thick black, the original thick grey; the methods in ten colours, then
    the same colours dashed and dotted, so that no two of up to 30 curves look alike."""
    if name in ("retrain", "original"):
        return {"color": "black" if name == "retrain" else "tab:gray", "linewidth": 2.5, "zorder": 3}
    index = methods.index(name)
    return {"color": f"C{index % 10}", "linestyle": ("-", "--", ":")[index // 10 % 3], "linewidth": 1.2}


def relearn_figure(audit: dict, path: Path) -> Path:
    """Accuracy on the measured forget examples over the relearning steps, per attack: each
    model's mean curve over seeds, the retrained model's in black (what the others should match)."""
    panels = [(title, {name: entry[attack]["curves"] for name, entry in audit["models"].items()})
              for attack, title in (("forget", "fine-tuned on part of the forget set"), ("neighbours", "fine-tuned on retain neighbours"))]
    return recovery_curves_figure(panels, f"accuracy on {audit['measured_examples']} measured forget examples (%)",
                                  f"Relearning attack: {audit['options']['steps']} SGD steps on {audit['relearn_examples']} examples, mean of {audit['options']['seeds']} seeds", path)


def recovery_curves_figure(panels: list[tuple[str, dict[str, list]]], ylabel: str, title: str, path: Path) -> Path:
    """One panel per attack: each model's mean accuracy curve over the attack's seeds."""
    models = max(len(curves) for _, curves in panels)
    # tall enough for the legend beside the last panel (a full run has 27 curves)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels) + 1.5 * (len(panels) == 1), max(3.8, 0.2 * models)), sharey=True, squeeze=False)
    for ax, (panel_title, curves) in zip(axes[0], panels):
        methods = [name for name in curves if name not in ("original", "retrain")]
        for name, runs in curves.items():
            mean = np.mean(runs, axis=0)
            ax.plot(np.arange(len(mean)), 100 * mean, label=name, **curve_style(name, methods))
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("relearning step")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def aggregate_table(aggregated: list[dict], seeds: list[int]) -> Table:
    table = Table(title=f"mean ± sd over seeds {', '.join(map(str, seeds))}; accuracy in %", title_justify="left")
    columns = [("QA forget", "qa_forget", 100, 1), ("QA retain", "qa_retain", 100, 1), ("QA test", "qa_test", 100, 1), ("extraction", "extraction_forget", 100, 1),
               ("perplexity", "perplexity", 1, 3), ("train", "train_acc", 100, 1), ("test", "test_acc", 100, 1), ("retain", "retain_acc", 100, 1), ("forget", "forget_acc", 100, 1),
               ("val", "val_acc", 100, 1), ("MIA", "mia", 1, 3), ("AUC", "attack_auc", 1, 3), ("JS", "js_forget", 1, 3),
               ("U-LiRA AUC", "ulira_auc", 1, 3), ("NeurIPS", "neurips_score", 1, 3), ("KLoM", "klom", 1, 3), ("KLoM (smoothed)", "klom_smoothed", 1, 3), ("ASR", "backdoor_asr", 1, 3), ("confusion", "confusion_test", 100, 1), ("relearn gap", "relearn_gap", 100, 1), ("int4 forget gap", "int4_forget_gap", 100, 1), ("avg gap", "avg_gap", 1, 3), ("× retrain", "time_ratio", 1, 3)]
    columns = [column for column in columns if any(column[1] in entry for entry in aggregated)]
    table.add_column("model")
    for title, *_ in columns:
        table.add_column(title, justify="right")
    for entry in aggregated:
        cells = [f"{scale * entry[key]['mean']:.{digits}f} ± {scale * entry[key]['sd']:.{digits}f}" if key in entry else "" for _, key, scale, digits in columns]
        table.add_row(entry["name"] + (" (reference)" if entry["name"] == "retrain" else ""), *cells)
    return table
