"""`edgecnn report` on a results store filled by a real small pipeline run (tests/conftest.py: pipeline_folder),
and the page in a real browser (Debian's headless Chromium)."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgecnn.bench.store import ResultStore
from edgecnn.report import collect, write_report
from edgecnn.report.collect import ReportData, micronet_score, pareto_front, recommend

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")


def _row(device, artifact, p50, acc, fmt="onnx", precision="fp32", threads=1):
    return {"device": device, "artifact": artifact, "file": f"model.{precision}.{fmt}", "format": fmt,
            "precision": precision, "threads": threads, "p50_ms": p50, "test_acc": acc, "device_acc": None}


def test_micronet_score_counts_int8_parameters_and_multiplies_at_a_quarter():
    fp32 = micronet_score(1_000_000, 10.0, "fp32")
    int8 = micronet_score(1_000_000, 10.0, "int8")
    assert fp32 == pytest.approx(1e6 / 36.5e6 + 2 * 10e6 / 10.49e9)
    assert int8 == pytest.approx(0.25e6 / 36.5e6 + 1.25 * 10e6 / 10.49e9)
    assert micronet_score(None, 10.0, "fp32") is None


def test_pareto_front_and_recommendation_respect_the_accuracy_budget():
    rows = [_row("pi", "a", 5.0, 0.92), _row("pi", "b", 2.0, 0.915), _row("pi", "c", 1.0, 0.80),
            _row("pi", "d", 3.0, 0.90), _row("host", "a", 1.0, 0.92), _row("pi", "ref", 0.5, 0.70, fmt="pytorch")]
    assert [r["artifact"] for r in pareto_front([r for r in rows if r["device"] == "pi"])] == ["ref", "c", "b", "a"]
    picks = {p["device"]: p for p in recommend(rows, max_drop=1.0)}
    assert picks["pi"]["artifact"] == "b"  # a is 0.5 pp better but slower; c is 12 pp worse; PyTorch never ships
    assert recommend(rows, max_drop=0.1)[1]["artifact"] == "a"
    assert recommend(rows, max_drop=20)[1]["artifact"] == "c"
    assert picks["host"]["artifact"] == "a" and picks["host"]["candidates"] == 1


@pytest.fixture(scope="module")
def written(pipeline_folder, tmp_path_factory):
    root = pipeline_folder
    store = ResultStore(root / "results" / "bench.sqlite")
    data = collect(runs_dir=root / "runs", artifacts_dir=root / "artifacts", store=store, max_drop=1.0)
    out = tmp_path_factory.mktemp("report")
    return root, store, data, write_report(data, out), out


def test_report_tables_come_from_the_store_runs_and_exports(written):
    root, store, data, files, _ = written
    run = json.loads((root / "runs" / "vgg19-exp8-cifar10-pipeline" / "result.json").read_text())
    export = json.loads((root / "artifacts" / "vgg19-exp8-cifar10-pipeline" / "export.json").read_text())
    [accuracy] = data.accuracy
    assert accuracy["test_acc"] == run["test_acc"] and accuracy["params"] == run["params"]
    assert accuracy["test_top5"] == run["test_top5"]
    assert accuracy["paper_params"] == 151_254  # CIFAR-10, 3 channels, a trained run: the paper's row is beside it
    stored = {(r["format"], r["precision"]): r for r in store.rows()}
    exported = {(a["format"], a["precision"]): a for a in export["artifacts"]}
    assert len(data.deployment) == len(stored) == 3
    for row in data.deployment:
        key = (row["format"], row["precision"])
        assert row["p50_ms"] == stored[key]["p50_ms"] and row["peak_rss_mib"] == stored[key]["peak_rss_mib"]
        assert row["test_acc"] == exported[key]["accuracy"] and row["test_top5"] == exported[key]["top5"]
        assert row["device_acc"] <= row["device_top5"] <= 1 and row["test_acc"] <= row["test_top5"] <= 1
        assert row["artifact"] == "vgg19-exp8-cifar10-pipeline"
        assert row["micronet"] == micronet_score(run["params"], run["mflops"], row["precision"])
    with open(files["deployment.csv"]) as handle:
        assert len(list(csv.DictReader(handle))) == 3
    [pick] = data.recommendations
    candidates = [r for r in data.deployment if r["format"] == "onnx"]
    best = max(r["test_acc"] for r in candidates)
    assert pick["p50_ms"] == min(r["p50_ms"] for r in candidates if r["test_acc"] >= best - 0.01)
    markdown = files["report.md"].read_text()
    assert f"host: ship vgg19-exp8-cifar10-pipeline/{pick['file']}" in markdown
    assert f"{stored[('onnx', 'int8')]['p50_ms']:.3f}" in markdown
    assert "![Accuracy vs latency per device](accuracy_vs_latency.png)" in markdown


def test_plots_are_real_pictures(written):
    *_, files, _ = written
    image = np.asarray(Image.open(files["accuracy_vs_latency.png"]).convert("L"))
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert (image < 128).mean() > 0.01  # axes, labels and points, not a blank canvas
    assert "pruning.png" not in files  # no pruned run here: no empty picture either
    assert "accuracy_vs_params.png" not in files  # one run: one point compares nothing


def test_the_page_names_where_it_ran_and_each_group_once(written):
    root, _, data, files, _ = written
    [host] = data.devices
    assert host["device"] == "host" and host["cpu"] and host["versions"]["onnxruntime"] and host["python"]
    assert host["bundles"] == [str(root / "artifacts" / "vgg19-exp8-cifar10-pipeline" / "bundle")]
    markdown = files["report.md"].read_text()
    where = markdown[markdown.index("## Where it ran"):]
    assert host["cpu"] in where and f"onnxruntime {host['versions']['onnxruntime']}" in where
    deployment = markdown[markdown.index("## Deployment"):markdown.index("## Cost on")]
    assert deployment.count("vgg19-exp8-cifar10-pipeline") == 1  # the artifact named once for its rows
    assert deployment.count("| host |") == 1


def test_report_cli_writes_the_same_report(written, tmp_path):
    root, *_ = written
    result = subprocess.run([sys.executable, "-m", "edgecnn", "report", "--runs-dir", root / "runs", "--exports-root",
                             root / "artifacts", "--store", root / "results" / "bench.sqlite", "--out", tmp_path],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 runs, 3 measurements" in result.stdout
    assert json.loads((tmp_path / "report.json").read_text())["recommendations"][0]["device"] == "host"
    missing = subprocess.run([sys.executable, "-m", "edgecnn", "report", "--store", tmp_path / "none.sqlite"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.startswith("edgecnn: error: results store not found")


PROBE = """<script>window.addEventListener('load', () => {
  const plots = [...document.querySelectorAll('figure.plot')].map(f => {
    const svg = f.querySelector('svg'), box = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()).map(t => {
      const r = t.getBoundingClientRect(); return [t.textContent.trim(), r.left, r.top, r.right, r.bottom]; });
    const points = svg.querySelectorAll('g[id^="PathCollection"] use').length;
    return {id: f.id, width: box.width, height: box.height, texts, points};
  });
  const tables = [...document.querySelectorAll('table')].map(t => [t.id, t.rows.length, t.getBoundingClientRect().width]);
  const probe = document.createElement('pre'); probe.id = 'probe';
  probe.textContent = JSON.stringify({plots, tables}); document.body.appendChild(probe);
});</script></body>"""


def browser_probe(page_path, tmp_path) -> dict:
    """The page as headless Chromium lays it out: each plot's size, its labels' boxes and its drawn points."""
    assert CHROMIUM, "scripts/setup.sh installs Debian's chromium-headless-shell"
    page = tmp_path / "probe.html"
    page.write_text(page_path.read_text().replace("</body>", PROBE))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--window-size=1280,1600", "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.split('<pre id="probe">')[1].split("</pre>")[0]
    return json.loads(text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def overlapping_labels(texts, slack: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of text boxes that cover each other by more than `slack` pixels both ways."""
    pairs = []
    for i, (a, *box_a) in enumerate(texts):
        for b, *box_b in texts[i + 1:]:
            width = min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])
            height = min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])
            if width > slack and height > slack:
                pairs.append((a, b))
    return pairs


def test_the_html_page_renders_in_a_real_browser(written, tmp_path):
    *_, files, _ = written
    probe = browser_probe(files["report.html"], tmp_path)
    [plot] = probe["plots"]  # accuracy vs latency (one run: no parameters plot)
    assert plot["id"] == "accuracy_vs_latency" and plot["width"] > 300 and plot["height"] > 200
    assert plot["points"] >= 3  # every measured file is drawn, not an empty frame
    labels = [t[0] for t in plot["texts"]]
    assert "1 thread" in labels and "test top-1 (%), whole test split" in labels
    assert overlapping_labels(plot["texts"]) == [], "labels overlap in the browser"
    tables = {name: (rows, width) for name, rows, width in probe["tables"]}
    assert tables["deployment"][0] == 4 and tables["accuracy"][0] == 2 and tables["devices"][0] == 2  # header + rows
    assert all(width > 300 for _, width in tables.values())
    shot = tmp_path / "report.png"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    done = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1600", files["report.html"].as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (1600, 1280) and pixels.std() > 10  # text, tables and plots drawn, not a blank page


def crowded_report() -> ReportData:
    """Eight files on one device's Pareto front, each a hair slower and more accurate than the last: their labels
    all want the same spot; two thread counts, a 0.14 pp spread of accuracy."""
    rows = []
    for i in range(8):
        row = _row("host", "exp13", 1.0 + 0.01 * i, 0.9 + 0.0002 * i, fmt=("onnx", "tflite")[i % 2],
                   threads=1 + i % 2)
        row.update(file=f"model.fp32.form{i}.{row['format']}", form=f"form{i}", bytes=1000, test_top5=None,
                   p99_ms=None, peak_rss_mib=50.0, micronet=None, judge="timing", emulated_ms=None)
        rows.append(row)
    return ReportData(deployment=rows)


def test_accuracy_axis_has_a_minimum_span_and_threads_have_their_own_markers():
    from edgecnn.report import plots

    figure = plots.accuracy_vs_latency(crowded_report())
    axis = figure.axes[0]
    low, high = axis.get_ylim()
    assert high - low >= plots.MIN_ACCURACY_SPAN and low < 90.0 and 90.14 < high  # 0.14 pp is not a full axis
    assert axis.get_xscale() == "linear"  # 1.00-1.07 ms: a log axis would only crowd its labels
    shapes = {len(c.get_paths()[0].vertices) for c in axis.collections}  # circle (1 thread) vs square (2)
    assert len(shapes) == 2
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert "1 thread" in legend and "2 threads" in legend and "onnx fp32" in legend


def test_the_browser_check_finds_overlapping_labels(tmp_path, monkeypatch):
    from edgecnn.report import plots

    spread = write_report(crowded_report(), tmp_path / "spread")
    [plot] = browser_probe(spread["report.html"], tmp_path)["plots"]
    assert plot["points"] == 8 and overlapping_labels(plot["texts"]) == []
    monkeypatch.setattr(plots, "_spread_labels", lambda figure, labels: None)  # matplotlib's own placement
    crowded = write_report(crowded_report(), tmp_path / "crowded")
    [plot] = browser_probe(crowded["report.html"], tmp_path)["plots"]
    assert len(overlapping_labels(plot["texts"])) >= 5  # the check sees what a reader would


def test_paper_rows_apply_only_to_trained_three_channel_cifar_runs():
    from edgecnn.report.collect import paper_comparable

    cifar = {"model": "resnet101-exp13", "dataset": "cifar10", "data": {"in_chans": 3, "num_classes": 10}}
    assert paper_comparable(cifar)
    assert not paper_comparable({**cifar, "data": {"in_chans": 1, "num_classes": 10}})  # grey input: other counts
    assert not paper_comparable({**cifar, "lineage": {"method": "structured"}})  # a pruned run is not the paper's
    assert not paper_comparable({**cifar, "dataset": "fashion-mnist"})


def test_a_bit_width_sweep_is_drawn_as_curves_and_kept_out_of_the_accuracy_table(trained_run, tmp_path):
    from edgecnn.compress.methods.bits import bit_sweep
    from edgecnn.compress.methods.lineage import load_parent

    run, data_dir = trained_run
    sweep, rows = bit_sweep(load_parent(run.checkpoint(), data_dir), bits=(8, 2), targets=("weights", "both"),
                            calib_images=32, test_images=50, runs_dir=tmp_path / "runs", name="sweep")
    data = collect(runs_dir=tmp_path / "runs", artifacts_dir=tmp_path / "artifacts", store=None)
    assert data.accuracy == [] and [b["run"] for b in data.bits] == ["sweep"]
    assert data.bits[0]["rows"] == rows and data.bits[0]["settings"]["simulated"]
    files = write_report(data, tmp_path / "report")
    image = np.asarray(Image.open(files["bit_widths.png"]).convert("L"))
    assert image.shape[1] > 300 and (image < 128).mean() > 0.01
    markdown = files["report.md"].read_text()
    assert "## Bit widths (simulated fixed-point quantization: information, not files)" in markdown
    both_8 = next(r for r in rows if r["target"] == "both" and r["bits"] == 8)
    assert f"{100 * both_8['top1']:.2f} / {100 * both_8['top5']:.2f}" in markdown
    assert json.loads(files["report.json"].read_text())["bits"][0]["run"] == "sweep"


def test_measurements_of_a_replaced_bundle_are_left_out_and_said(pipeline_folder, tmp_path):
    """After an export replaced a bundle, its old bench rows name a bundle that no longer exists: the report
    leaves them out (and says how many); a row of a model with no bundle here at all stays."""
    store_path = tmp_path / "bench.sqlite"
    shutil.copy(pipeline_folder / "results" / "bench.sqlite", store_path)
    store = ResultStore(store_path)
    [current, *_] = store.rows()
    store.add({**current, "row_id": None, "bundle": "vgg19-exp8-000000000000", "p50_ms": 99.0})  # replaced
    store.add({**current, "row_id": None, "model": "elsewhere", "bundle": "elsewhere-111111111111"})  # foreign
    data = collect(runs_dir=pipeline_folder / "runs", artifacts_dir=pipeline_folder / "artifacts", store=store,
                   max_drop=1.0)
    assert data.sources["superseded_measurements"] == 1
    assert all(row["p50_ms"] != 99.0 for row in data.deployment)
    assert sum(row["model"] == "elsewhere" for row in data.deployment) == 1
    files = write_report(data, tmp_path / "report")
    assert "1 older measurements of bundles that were since replaced" in files["report.md"].read_text()
