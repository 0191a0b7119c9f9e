"""What a recsys run shows: the table, on the terminal (rich) and as markdown (table.md)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# (header, key, kind): "%" a share shown in per cent, "auc" an AUC with its interval, "gap" a
# difference to the retrained model in points, "s" seconds, "x" a ratio
COLUMNS = (
    ("recall@10 kept", "recall_retain", "%"), ("NDCG@10 kept", "ndcg_retain", "%"),
    ("recall@10 deleted", "recall_forget", "%"), ("NDCG@10 deleted", "ndcg_forget", "%"),
    ("recall@10 deleted, own items", "recall_forget_train", "%"), ("attack AUC [95% CI]", "attack_auc", "auc"),
    ("Δ recall kept", "gap_recall_retain", "gap"), ("Δ recall deleted", "gap_recall_forget", "gap"),
    ("Δ own items", "gap_recall_forget_train", "gap"), ("Δ AUC", "gap_attack_auc", "gap"),
    ("seconds", "seconds", "s"), ("× retrain", "time_ratio", "x"),
)


def cell(row: dict, key: str, kind: str) -> str:
    value = row.get(key)
    if kind == "auc":
        low, high = row["attack_auc_ci"]
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    if kind == "%":
        return f"{100 * value:.1f}"
    if kind == "gap":
        return f"{100 * value:+.1f}" if "recall" in key or "ndcg" in key else f"{value:+.3f}"
    return f"{value:.1f}" if kind == "s" else f"{value:.2f}"


def name_cell(row: dict) -> str:
    return f"{row['name']} ({row['shards_retrained']}/{row['shards']} shards retrained)" if "shards" in row else row["name"]


def caption(results: dict) -> str:
    control = results["positive_control"]
    split = results["split"]
    return (f"{results['preset']}, seed {results['seed']}: {len(split['forget_users'])} users deleted ({split['forget_interactions']} interactions), "
            f"{split['retain_users']} kept. Recall and NDCG at k={results['k']} in %, Δ in points (recall) or AUC units against retrain; "
            f"attack: deleted users' training vs held-out interactions, rank percentile. Positive control "
            f"{'passed' if control['passed'] else 'FAILED'}: {control['note']}.")


def markdown_table(results: dict) -> str:
    header = "| model | " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [f"| {name_cell(row)} | " + " | ".join(cell(row, key, kind) for _, key, kind in COLUMNS) + " |" for row in results["rows"]]
    return "\n".join([caption(results), "", header, rule, *lines]) + "\n"


def print_table(results: dict) -> None:
    table = Table(title=caption(results), title_justify="left")
    table.add_column("model")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    for row in results["rows"]:
        table.add_row(name_cell(row), *(cell(row, key, kind) for _, key, kind in COLUMNS))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
