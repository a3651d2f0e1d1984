"""Render ReportData as Markdown (beside PNG files), one self-contained HTML page (PNGs embedded), CSV and JSON.

Both text formats come from the same table builders, so the Markdown and the HTML never disagree."""

from __future__ import annotations

import csv
import html
import io
import json
import time
from pathlib import Path

from edgecnn import __version__
from edgecnn.errors import EdgecnnError
from edgecnn.io import atomic_write_bytes, atomic_write_text

from .collect import ReportData, pareto_front
from .plots import PLOTS, pictures


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _num(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def accuracy_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The paper's table shape: params, FLOPs, size and accuracy per variant, the published values beside ours
    where the dataset is the paper's (CIFAR-10/100, 3 channels, not a derived run)."""
    columns = ["run", "model", "dataset", "method", "params", "MFLOPs", "size MiB", "test acc %", "test top-5 %",
               "paper params", "paper MFLOPs", "paper top-1 %"]
    rows = [[r["run"], r["model"], r["dataset"], r["method"] + (f" of {r['parent']}" if r["parent"] else ""),
             _num(r["params"], ","), _num(r["mflops"], ".2f"), _num(r["size_mib"], ".2f"), _pct(r["test_acc"]),
             _pct(r.get("test_top5")),
             _num(r["paper_params"], ","), _num(r["paper_mflops"], ".2f"), _pct(r["paper_top1"])]
            for r in data.accuracy]
    return columns, rows


def deployment_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    columns = ["device", "artifact", "file", "form", "threads", "file MMACs", "ops", "size KiB", "test acc %",
               "test top-5 %", "device acc %", "p50 ms", "p99 ms", "M instr", "peak MiB", "MicroNet score", "Pareto"]
    front = {id(r) for device in {r["device"] for r in data.deployment}
             for r in pareto_front([x for x in data.deployment if x["device"] == device and x["format"] != "pytorch"])}
    rows = [[r["device"], r["artifact"], r["file"], r.get("form") or "–", str(r["threads"]),
             _num(r.get("file_mmacs") if r["format"] != "pytorch" else r.get("model_mmacs"), ".2f"),
             _num(r.get("file_ops"), "d"), _num(r["bytes"] and r["bytes"] / 1024, ",.1f"),
             _pct(r["test_acc"]), _pct(r.get("test_top5")), _pct(r["device_acc"]),
             _num(r["p50_ms"], ".3f") if r["p50_ms"] is not None else
             (f"{r['emulated_ms']:.0f} (emulated)" if r.get("emulated_ms") else "–"),
             _num(r["p99_ms"], ".3f"), _num(r.get("instructions") and r["instructions"] / 1e6, ".2f"),
             _num(r["peak_rss_mib"], ".1f"), _num(r["micronet"], ".5f"), "★" if id(r) in front else ""]
            for r in data.deployment]
    return columns, rows


def devices_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Where the measurements were made: each device's CPU, system, Python and runtime versions as its own runner
    reported them (newest measurement), and the bundle folders it ran."""
    columns = ["device", "judged by", "arch", "CPU", "system", "Python", "runtimes", "bundle"]
    rows = [[d["device"], d["judge"], d["arch"] or "–", d["cpu"] or "–", d["system"] or "–", d["python"] or "–",
             ", ".join(f"{k} {v}" for k, v in d["versions"].items()) or "–", "; ".join(d["bundles"]) or "–"]
            for d in data.devices]
    return columns, rows


def grouped(rows: list[list[str]], keys: int = 2) -> list[list[str]]:
    """The first `keys` cells left empty where they repeat the row above, so a device or artifact is named once
    per group (the CSV keeps every cell)."""
    shown, previous = [], None
    for row in rows:
        head = row[:keys]
        shown.append(["" if previous is not None and head[:i + 1] == previous[:i + 1] else cell
                      for i, cell in enumerate(head)] + row[keys:])
        previous = head
    return shown


def arm_cost_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """Executed aarch64 instructions per inference of every file on each emulated Pi CPU (one thread), beside the
    file's own multiply-adds and operators and the model's; ★ marks each CPU's pick."""
    counted = [r for r in data.deployment if r.get("instructions") is not None and r["judge"] == "instructions"]
    devices = sorted({r["device"] for r in counted})
    picks = {(p["device"], p["artifact"], p["file"]) for p in data.recommendations if p["judge"] == "instructions"}
    files = sorted({(r["artifact"], r["file"]) for r in counted})
    columns = ["artifact", "file", "form", "model MMACs", "file MMACs", "ops", *[f"{d} M instr" for d in devices]]
    rows = []
    for artifact, file in files:
        seen = [r for r in counted if (r["artifact"], r["file"]) == (artifact, file)]
        by_device = {r["device"]: r for r in seen}
        first = seen[0]
        rows.append([artifact, file, first.get("form") or "–", _num(first.get("model_mmacs"), ".2f"),
                     _num(first.get("file_mmacs"), ".2f"), _num(first.get("file_ops"), "d"),
                     *[(f"{by_device[d]['instructions'] / 1e6:.2f}" + (" ★" if (d, artifact, file) in picks else ""))
                       if d in by_device else "–" for d in devices]])
    return columns, rows


def bits_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """One row per sweep and bit width: top-1 / top-5 with weights, activations or both quantized."""
    columns = ["sweep", "bits", "weights top-1 / top-5", "activations top-1 / top-5", "both top-1 / top-5",
               "both MicroNet"]
    rows = []
    for sweep in data.bits:
        by = {(r["target"], r["bits"]): r for r in sweep["rows"]}
        reference = by.get(("none", 32), {})
        pair = f"{_pct(reference.get('top1'))} / {_pct(reference.get('top5'))}"
        rows.append([sweep["run"], "32 (float)", pair, pair, pair, _num(reference.get("micronet"), ".5f")])
        for width in sorted({b for t, b in by if t != "none"}, reverse=True):
            cells = [f"{_pct(by[(t, width)]['top1'])} / {_pct(by[(t, width)]['top5'])}" if (t, width) in by else "-"
                     for t in ("weights", "activations", "both")]
            rows.append(["", str(width), *cells, _num(by.get(("both", width), {}).get("micronet"), ".5f")])
        loses = ", ".join(f"{t} at {b} bits" if b else f"{t} at no width measured"
                          for t, b in sweep.get("loses_1pp_at", {}).items())
        rows.append(["", "loses > 1 pt", loses, "", "", ""])
    return columns, rows


def recommendation_lines(picks: list[dict]) -> list[str]:
    lines = []
    for pick in picks:
        cost = (f"{pick['instructions'] / 1e6:.2f} M instructions per inference" if pick["metric"] == "instructions"
                else f"p50 {pick['p50_ms']:.3f} ms")
        why = (f" (not benched on the board yet: fewest instructions on {pick['by']}, its CPU {pick['target']})"
               if pick.get("by") else "")
        lines.append(f"{pick['device']}: ship {pick['artifact']}/{pick['file']} with {pick['threads']} thread(s) — "
                     f"{cost}, accuracy {100 * pick['accuracy']:.2f} % (best measured "
                     f"{100 * pick['best_accuracy']:.2f} %, budget {pick['max_drop_pp']:g} pp, "
                     f"{pick['candidates']} candidates){why}")
    return lines or ["no deployment measurements yet: run `edgecnn bench` (or `edgecnn pipeline`)"]


NOTES = ("Accuracy: 'test acc' is the file's accuracy on the whole test split, measured at export through its own "
         "runtime; 'device acc' is the device's score on the bundle's sample images. Latency: batch 1, percentiles "
         "of timed runs after warm-up. MicroNet score: parameters / 36.5 M + operations / 10.49 G (WideResNet-28-10 "
         "on CIFAR-100, the MicroNet challenge's reference); a multiply-add counts two operations; for int8 files "
         "parameters and multiplies count a quarter. ★: on the device's Pareto front (no file both faster and more "
         "accurate).")


def _md_table(columns: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none yet_\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html_table(columns: list[str], rows: list[list[str]], table_id: str) -> str:
    if not rows:
        return "<p><em>none yet</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;overflow-x:auto;max-width:100%}
td{white-space:nowrap}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:nth-child(-n+3){text-align:left}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
.rec{background:#eef7ee;border-left:4px solid #3a3;padding:.5em 1em}.note{color:#555;font-size:13px}
figure.plot{margin:.5em 0;overflow-x:auto}figure.plot svg{max-width:100%;height:auto;border:1px solid #ddd}"""


def _superseded_note(data) -> str:
    count = data.sources.get("superseded_measurements") or 0
    return (f" {count} older measurements of bundles that were since replaced (their files no longer exist) are "
            "left out." if count else "")


def render(data: ReportData, images: dict[str, dict[str, bytes]], title: str) -> tuple[str, str]:
    """(markdown, html) of the whole report."""
    stamp = time.strftime("%Y-%m-%d %H:%M")
    accuracy, arm, devices = accuracy_table(data), arm_cost_table(data), devices_table(data)
    columns, rows = deployment_table(data)
    deployment = (columns, grouped(rows))
    recommendations = recommendation_lines(data.recommendations)
    md = [f"# {title}\n", f"edgecnn {__version__}, {stamp}. Sources: {data.sources.get('runs')}, "
          f"{data.sources.get('artifacts')}, {data.sources.get('store')}.\n",
          f"## Recommendation (cheapest file within {data.max_drop:g} pp of the best accuracy)\n",
          *[f"- {line}" for line in recommendations], "", "## Deployment\n", _md_table(*deployment),
          NOTES + _superseded_note(data) + "\n",
          "## Cost on the Raspberry Pi CPUs (emulated: aarch64 instructions per inference, one thread)\n",
          _md_table(*arm), "## Accuracy\n", _md_table(*accuracy), "## Where it ran\n", _md_table(*devices)]
    if data.bits:
        md += ["## Bit widths (simulated fixed-point quantization: information, not files)\n", _md_table(*bits_table(data))]
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
            f"<p class='note'>edgecnn {__version__}, {stamp}.</p>",
            f"<h2>Recommendation (cheapest file within {data.max_drop:g} pp of the best accuracy)</h2>",
            *[f"<p class='rec'>{html.escape(line)}</p>" for line in recommendations],
            "<h2>Deployment</h2>", _html_table(*deployment, "deployment"),
            f"<p class='note'>{html.escape(NOTES + _superseded_note(data))}</p>",
            "<h2>Cost on the Raspberry Pi CPUs (emulated: aarch64 instructions per inference, one thread)</h2>",
            _html_table(*arm, "arm-cost"), "<h2>Accuracy</h2>", _html_table(*accuracy, "accuracy"),
            "<h2>Where it ran</h2>", _html_table(*devices, "devices")]
    if data.bits:
        page += ["<h2>Bit widths (simulated fixed-point quantization: information, not files)</h2>",
                 _html_table(*bits_table(data), "bits")]
    for name, (caption, _) in PLOTS.items():
        if name in images:
            md.append(f"## {caption}\n\n![{caption}]({name})\n")
            svg = images[name]["svg"].decode()
            svg = svg[svg.index("<svg"):]  # inline: the XML prolog and doctype belong to a file, not a page
            page.append(f"<h2>{html.escape(caption)}</h2><figure class='plot' id='{Path(name).stem}' "
                        f"aria-label='{html.escape(caption)}'>{svg}</figure>")
    page.append("</body></html>")
    return "\n".join(md), "\n".join(page)


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_report(data: ReportData, out_dir: str | Path, title: str = "edgecnn report") -> dict[str, Path]:
    """Write every file of the report into out_dir (each atomically); returns name -> path."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EdgecnnError(f"{out} is a file, not a folder for the report")
    out.mkdir(parents=True, exist_ok=True)
    images = {name: pictures(figure) for name, (_, draw) in PLOTS.items() if (figure := draw(data)) is not None}
    for stale in set(PLOTS) - set(images):
        (out / stale).unlink(missing_ok=True)  # a plot with no data this time must not show last time's picture
    written = {name: atomic_write_bytes(out / name, drawn["png"]) for name, drawn in images.items()}
    markdown, page = render(data, images, title)
    written["report.md"] = atomic_write_text(out / "report.md", markdown)
    written["report.html"] = atomic_write_text(out / "report.html", page)
    written["deployment.csv"] = atomic_write_text(out / "deployment.csv", _csv(data.deployment))
    written["accuracy.csv"] = atomic_write_text(out / "accuracy.csv", _csv(data.accuracy))
    written["report.json"] = atomic_write_text(out / "report.json", json.dumps(data.to_dict(), indent=2) + "\n")
    return written
