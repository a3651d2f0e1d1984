"""The report's pictures (matplotlib, Agg: no display needed). Each function returns PNG bytes, or None when
there is nothing to draw."""

from __future__ import annotations

import io

from .collect import PRUNING_LOGS, ReportData, pareto_front


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log_ticks(axis) -> None:
    """Log axis labelled 0.5, 1, 2 ... instead of 2x10^0."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.xaxis.set_major_formatter(plain)
    axis.xaxis.set_minor_formatter(plain)


def _label(row: dict) -> str:
    return f"{row['artifact']} {row['format']}-{row['precision']} t{row['threads']}"


def accuracy_vs_latency(data: ReportData) -> bytes | None:
    """One panel per device: every measured file at every thread count, the Pareto front joined by a line. The
    y axis is the whole-test-split accuracy measured at export; a row without it (a file benched from elsewhere
    with no dataset) is in the table, not on this axis, so a sample's score never sits among test scores."""
    devices = sorted({r["device"] for r in data.deployment if r["p50_ms"] is not None and r["test_acc"] is not None})
    if not devices:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(devices), figsize=(6.5 * len(devices), 4.6), squeeze=False)
    markers = {("onnx", "fp32"): "o", ("onnx", "int8"): "s", ("tflite", "fp32"): "^", ("tflite", "int8"): "D",
               ("ncnn", "fp32"): "v", ("ncnn", "int8"): "P", ("executorch", "fp32"): "<", ("executorch", "int8"): "X",
               ("onnx", "fp16"): "h", ("tflite", "fp16"): "d", ("ncnn", "fp16"): "p", ("executorch", "fp16"): ">",
               ("pytorch", "fp32"): "x"}
    for axis, device in zip(axes[0], devices):
        rows = [r for r in data.deployment if r["device"] == device and r["p50_ms"] is not None
                and r["test_acc"] is not None]
        for (fmt, precision), marker in markers.items():
            chosen = [r for r in rows if (r["format"], r["precision"]) == (fmt, precision)]
            if chosen:
                axis.scatter([r["p50_ms"] for r in chosen], [100 * r["test_acc"] for r in chosen], marker=marker,
                             s=46, label=f"{fmt} {precision}", alpha=0.85)
        front = pareto_front([r for r in rows if r["format"] != "pytorch"])
        if front:
            axis.plot([r["p50_ms"] for r in front], [100 * r["test_acc"] for r in front], "k--", lw=1,
                      label="Pareto front")
            for row in front:
                axis.annotate(_label(row), (row["p50_ms"], 100 * row["test_acc"]), fontsize=7,
                              xytext=(4, 4), textcoords="offset points")
        axis.set_xscale("log")
        _plain_log_ticks(axis)
        axis.set_xlabel("p50 latency, batch 1 (ms, log scale)")
        axis.set_ylabel("test top-1 (%), whole test split")
        axis.set_title(f"{device}: accuracy vs latency")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def accuracy_vs_params(data: ReportData) -> bytes | None:
    rows = [r for r in data.accuracy if r["params"] and r["test_acc"] is not None]
    if not rows:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.6))
    for method in sorted({r["method"] for r in rows}):
        chosen = [r for r in rows if r["method"] == method]
        axis.scatter([r["params"] for r in chosen], [100 * r["test_acc"] for r in chosen], label=method, s=46)
    for row in rows:
        axis.annotate(row["run"], (row["params"], 100 * row["test_acc"]), fontsize=7, xytext=(4, 4),
                      textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("parameters (log scale)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("accuracy vs parameters")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    return _png(figure)


def pruning_curves(data: ReportData) -> bytes | None:
    """Test accuracy per pruning step: against sparsity for the paper's unstructured pruning, against MFLOPs kept
    for structured (channel) and depth (block) pruning, which shrink what actually runs."""
    if not data.pruning:
        return None
    plt = _pyplot()
    kinds = [kind for kind in PRUNING_LOGS if any(p["kind"] == kind for p in data.pruning)]  # the order they run in
    figure, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.6), squeeze=False)
    for axis, kind in zip(axes[0], kinds):
        for curve in (p for p in data.pruning if p["kind"] == kind):
            steps = curve["rows"]
            if kind == "unstructured":
                x = [100 * s["sparsity"] for s in steps]
                axis.set_xlabel("sparsity of the conv weights (%)")
            else:
                x = [s["mflops"] for s in steps]
                axis.set_xlabel("MFLOPs (fvcore), fewer to the right")
            axis.plot(x, [100 * s["test_acc"] for s in steps], "o-", label=curve["run"])
        if kind != "unstructured":
            axis.invert_xaxis()  # once per panel: pruning moves right in every panel
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(f"{kind} pruning")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    return _png(figure)


def bit_width_curves(data: ReportData) -> bytes | None:
    """Top-1 against bit width per sweep, one line per target (weights, activations, both), the float model as a
    dashed line: where each starts to cost accuracy. Simulated settings, not files."""
    if not data.bits:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(data.bits), figsize=(6.2 * len(data.bits), 4.4), squeeze=False)
    markers = {"weights": "o-", "activations": "s-", "both": "^-"}
    for axis, sweep in zip(axes[0], data.bits):
        reference = next(r for r in sweep["rows"] if r["target"] == "none")
        widths = sorted({r["bits"] for r in sweep["rows"] if r["target"] != "none"})
        for target, style in markers.items():
            points = sorted((r["bits"], 100 * r["top1"]) for r in sweep["rows"] if r["target"] == target)
            if points:
                axis.plot(*zip(*points), style, label=f"{target} quantized")
        axis.axhline(100 * reference["top1"], color="grey", linestyle="--", linewidth=1, label="float (32 bits)")
        axis.set_xticks(widths)
        axis.set_xlabel("bit width")
        axis.set_ylabel("test top-1 (%)")
        settings = sweep["settings"]
        axis.set_title(f"{sweep['model']}: {settings.get('quantizer', '')} {settings.get('range', '')}, "
                       f"{settings.get('granularity', '')} (simulated)", fontsize=9)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    return _png(figure)


PLOTS = {  # file name: (title, function)
    "accuracy_vs_latency.png": ("Accuracy vs latency per device", accuracy_vs_latency),
    "accuracy_vs_params.png": ("Accuracy vs parameters", accuracy_vs_params),
    "pruning.png": ("Pruning curves", pruning_curves),
    "bit_widths.png": ("Accuracy versus bit width (simulated fixed-point quantization)", bit_width_curves),
}
