"""Self-contained HTML pages (figures embedded, no network): a run's report, a served deletion
batch's report, and the deletion-request service's dashboard."""

from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d2330;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccd;padding:.3em .6em;text-align:right}
th{background:#eef1f6}td.l{text-align:left}td:first-child,th:first-child{text-align:left}
.pass{color:#fff;background:#1b7f3a;padding:.1em .5em;border-radius:4px}
.fail{color:#fff;background:#b3261e;padding:.1em .5em;border-radius:4px}
.overdue{color:#b3261e;font-weight:bold}.muted{color:#667}
img{max-width:100%;border:1px solid #dde}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{flex:1 1 30%;min-width:320px;margin:0}
"""


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{STYLE}</style></head><body>{body}</body></html>")


def png_tag(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def file_img(path: Path) -> str:
    return f"<figure><img alt='{escape(path.stem)}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'><figcaption class=muted>{escape(path.name)}</figcaption></figure>"


def badge(passed: bool) -> str:
    return "<span class=pass>PASS</span>" if passed else "<span class=fail>FAIL</span>"


def table(headers: list[str], rows: list[list]) -> str:
    """Numbers right-aligned, words left-aligned."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    align = lambda cell: "" if str(cell)[:1].isdigit() or str(cell)[:1] in "-+" else " class=l"  # noqa: E731
    body = "".join("<tr>" + "".join(f"<td{align(cell)}>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def batch_figure(report: dict) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    keys = [("forget_acc", "requested"), ("retain_acc", "retained"), ("test_acc", "test")]
    xs = range(len(keys))
    for offset, stage in ((-0.2, "before"), (0.2, "after")):
        left.bar([x + offset for x in xs], [100 * report[stage][k] for k, _ in keys], width=0.4, label=stage)
    left.set_xticks(list(xs), [label for _, label in keys])
    left.set_ylabel("accuracy (%)")
    left.legend()
    names = list(report["attacks"])
    for offset, stage in ((-0.2, "before"), (0.2, "after")):
        values = [report["attacks"][n][stage]["auc"]["value"] for n in names]
        lows = [v - report["attacks"][n][stage]["auc"]["ci95"][0] for v, n in zip(values, names)]
        highs = [report["attacks"][n][stage]["auc"]["ci95"][1] - v for v, n in zip(values, names)]
        right.bar([i + offset for i in range(len(names))], values, width=0.4, yerr=[lows, highs], capsize=3, label=stage)
    right.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    right.set_xticks(range(len(names)), names)
    right.set_ylabel("attack AUC, 95% interval")
    right.set_ylim(0.3, 1.0)
    return png_tag(fig, "accuracy and attack AUC before and after")


def batch_report(report: dict) -> str:
    verdict = report["verdict"]
    rows = [[escape(label), f"{100 * report['before'][key]:.1f}%", f"{100 * report['after'][key]:.1f}%"]
            for key, label in (("forget_acc", f"accuracy on the {report['images']} requested images"), ("retain_acc", f"accuracy on {report['retain_sample']} retained images"),
                               ("test_acc", f"test accuracy ({report['test_images']} images)"))]
    for name, attack in report["attacks"].items():
        cell = lambda s: f"{s['auc']['value']:.3f} [{s['auc']['ci95'][0]:.3f}, {s['auc']['ci95'][1]:.3f}]"  # noqa: E731
        rows.append([escape(f"{name} attack AUC (requested vs test)") + ("" if attack["signal"] else " <span class=muted>(no signal before)</span>"),
                     cell(attack["before"]), cell(attack["after"])])
    checks = [[escape(c["check"]), badge(c["passed"]), escape(c["detail"])] for c in verdict["checks"]]
    figure = batch_figure(report) if report["attacks"] else ""
    body = (f"<h1>Deletion batch {report['action']}: verdict {badge(verdict['passed'])}</h1>"
            f"<p>{len(report['requests'])} request{'s' if len(report['requests']) != 1 else ''} ({escape(', '.join(report['requests'][:20]))}{' …' if len(report['requests']) > 20 else ''}), "
            f"{report['images']} images unlearned from model version {report['input_version']} with <b>{escape(report['method'])}</b> "
            f"in {report['unlearn_seconds']:.1f} s.</p>"
            + (f"<p><b>Exact deletion</b>: {escape(report['exact'])}.</p>" if report.get("exact") else "")
            + f"<h2>Verdict</h2>{table(['check', 'result', 'measured'], checks)}"
            f"<p class=muted>Rule: {escape(json.dumps(verdict['rule']))}. A failed verdict sends the requests to exact retraining.</p>"
            f"<h2>Before and after</h2>{table(['measure', 'before', 'after'], rows)}{figure}"
            f"<h2>Positive control</h2><p>{escape(report['positive_control']['note'])}.</p>"
            + "".join(f"<p class=muted>Not computed: {escape(reason)}.</p>" for reason in report["skipped"])
            + f"<h2>What this shows</h2><p>{escape(report['what_this_shows'])}</p>")
    return page(f"Deletion batch {report['action']}", body)


def run_report(results: dict, figures: list[Path]) -> str:
    """`unlearnkit run`'s page: the table of methods against the retrained reference, the
    evidence, and every figure the run drew."""
    rows = results.get("rows", [])
    numeric = ["forget_acc", "retain_acc", "test_acc", "val_acc", "mia", "avg_gap", "seconds", "time_ratio"]
    numeric += sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in numeric})
    present = [c for c in numeric if any(isinstance(r.get(c), (int, float)) for r in rows)]
    cells = [[escape(str(r.get("name")))] + [("" if not isinstance(r.get(c), (int, float)) else
                                             f"{100 * r[c]:.1f}" if c.endswith("_acc") else f"{r[c]:.3f}") for c in present] for r in rows]
    split = results.get("split", {})
    body = (f"<h1>unlearnkit run: {escape(str(results.get('preset', {}).get('name', '') if isinstance(results.get('preset'), dict) else results.get('preset', '')))}</h1>"
            f"<p>Forget set: {escape(str(split.get('spec', '')))} — {split.get('forget', '?')} images forgotten, {split.get('retain', '?')} retained. "
            "Accuracies in %; each method is compared with <b>retrain</b>, the model trained without the forgotten images.</p>"
            f"<h2>Results</h2>{table(['model'] + present, cells)}"
            f"<p>Positive control: {badge(bool(results.get('positive_control', {}).get('passed')))} {escape(str(results.get('positive_control', {}).get('note', '')))}</p>"
            + "".join(f"<p class=overdue>Warning: {escape(w)}</p>" for r in rows for w in r.get("warnings", []))
            + f"<h2>Figures</h2><div class=figs>{''.join(file_img(p) for p in figures if p.suffix == '.png' and p.is_file())}</div>")
    return page("unlearnkit run", body)


def dashboard(overview: dict) -> str:
    """The service's page: requests by status and time left, model lineage, verdicts, reports."""
    counts = overview["counts"]
    status_rows = [[escape(s), str(counts.get(s, 0))] for s in ("pending", "in_progress", "retrain_scheduled", "failed", "served")]
    open_rows = [[escape(r["id"]), escape(r["status"]), escape(r["received"][:19].replace("T", " ")),
                  f"<span class=overdue>OVERDUE by {escape(r['left'])}</span>" if r["overdue"] else escape(r["left"]), str(r["images"])]
                 for r in overview["open"]]
    versions = [[str(v["id"]) + (" <b>(deployed)</b>" if v["deployed"] else ""), escape(v["kind"]), escape(str(v["parent"] or "")), escape(v["method"] or ""),
                 badge(v["verdict"] == "pass") if v["verdict"] else "", str(v["train_count"]), escape(v["sha256"][:12]),
                 escape(v["purged"][:19].replace("T", " ")) if v["purged"] else ""] for v in overview["versions"]]
    actions = [[str(a["id"]), escape(a["kind"]), escape(a["status"]), str(len(a["requests"])), badge(a["passed"]) if a["passed"] is not None else "",
                f"<a href='/actions/{a['id']}/report.html'>report</a>" if a["report"] else ""] for a in overview["actions"]]
    chain = overview["chain"]
    body = (f"<h1>unlearnkit deletion requests</h1><p>Audit chain: {badge(not chain['problems'])} "
            f"{'verified' if not chain['problems'] else escape(chain['problems'][0])} — head entry {chain['head'][0]}, hash {escape(chain['head'][1][:16])}…</p>"
            f"<h2>Requests by status</h2>{table(['status', 'requests'], status_rows)}"
            f"<h2>Open requests by time left</h2>{table(['request', 'status', 'received (UTC)', 'time left', 'images'], open_rows) if open_rows else '<p>None open.</p>'}"
            f"<h2>Model lineage</h2>{table(['version', 'kind', 'parent', 'method', 'verdict', 'training images', 'sha256', 'files purged (UTC)'], versions)}"
            f"<h2>Actions</h2>{table(['action', 'kind', 'status', 'requests', 'verdict', 'report'], actions) if actions else '<p>None yet.</p>'}")
    return page("unlearnkit dashboard", body)
