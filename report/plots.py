"""The report's pictures (matplotlib, Agg: no display needed). Each function returns a figure, or None when
there is nothing to draw; `pictures` turns a figure into PNG and SVG."""

from __future__ import annotations

import io

from .collect import PRUNING_LOGS, ReportData, pareto_front


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: selectable, and checkable in a browser
    import matplotlib.pyplot as plt

    return plt


def pictures(figure) -> dict[str, bytes]:
    """The figure as PNG (Markdown, docs) and SVG (inlined in the HTML page), then closed."""
    import matplotlib.pyplot as plt

    drawn = {}
    for kind in ("png", "svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=kind, dpi=110, bbox_inches="tight")
        drawn[kind] = buffer.getvalue()
    plt.close(figure)
    return drawn


#: smallest span of an accuracy axis, in percentage points: a 0.2 pp spread drawn across the whole axis makes
#: noise look like a difference
MIN_ACCURACY_SPAN = 2.0


def _accuracy_limits(axis, values: list[float]) -> None:
    low, high = min(values), max(values)
    middle, half = (low + high) / 2, max(high - low, MIN_ACCURACY_SPAN) / 2
    margin = 0.12 * half
    axis.set_ylim(max(0.0, middle - half - margin), min(100.0, middle + half + margin))


def _x_axis(axis, values: list[float], label: str, spec: str = "g") -> None:
    """Log scale when the values spread over more than a factor of 4, linear otherwise; at most 6 labelled ticks
    with plain numbers and no labelled minor ticks, so neighbouring labels never run into each other."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    plain = FuncFormatter(lambda value, _: format(value, spec))
    if max(values) > 4 * min(values):
        _log_x(axis, plain)
        axis.set_xlabel(f"{label} (log scale)")
    else:
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5))
        axis.xaxis.set_major_formatter(plain)
        axis.set_xlabel(label)
    axis.set_xlim(min(values) / 1.15, max(values) * 1.15)


def _log_x(axis, formatter) -> None:
    """A log x axis with labels at 1-2-5 steps only (labelled minor ticks run into each other)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(formatter)
    axis.xaxis.set_minor_formatter(NullFormatter())


def _spread_labels(figure, labels: list) -> None:
    """Place each point label where it covers no other label, no labelled point, no title or legend, inside its
    panel: above its point first (stacked in the order of the points, so leader lines do not cross), then below
    it, on the left side when the right one runs out of the panel. matplotlib itself places them blindly; a thin
    leader line joins each label to its point."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = figure.canvas.get_renderer()
    points_per_pixel = 72 / figure.dpi

    def text_box(label):  # the words alone: an Annotation's own extent includes its leader line
        label.update_positions(renderer)  # where its xyann puts it now (matplotlib updates it only when drawing)
        return Text.get_window_extent(label, renderer)

    placed = []
    for axis in {id(label.axes): label.axes for label in labels}.values():  # what no label may cover
        placed.append(axis.title.get_window_extent(renderer))
        if axis.get_legend():
            placed.append(axis.get_legend().get_window_extent(renderer))
    for label in labels:  # the points themselves: a label must not hide one
        x, y = label.axes.transData.transform(label.xy)
        placed.append(Bbox([[x - 5, y - 5], [x + 5, y + 5]]))
    previous_of = {}  # per panel, the label placed last
    for label in sorted(labels, key=lambda a: (a.xy[0], a.xy[1])):
        panel = label.axes.get_window_extent(renderer)
        height = text_box(label).height * points_per_pixel
        previous = previous_of.get(id(label.axes))

        def fits(box, above: bool) -> bool:
            inside = panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1
            ordered = (not above or previous is None or box.x0 >= previous.x1 or box.x1 <= previous.x0
                       or box.y0 >= previous.y0)  # stacked in the order of the points: leader lines do not cross
            return inside and ordered and not any(box.expanded(1.02, 1.1).overlaps(other) for other in placed)

        chosen = False
        for side in ("left", "right"):  # ha="left": the text starts right of its point
            label.set_horizontalalignment(side)
            dx = 6 if side == "left" else -6
            for dy in [5 + k * height for k in range(40)] + [-5 - (k + 1) * height for k in range(40)]:
                label.xyann = (dx, dy)
                if fits(text_box(label), dy > 0):
                    chosen = True
                    break
            if chosen:
                break
        if not chosen:  # a panel too full for every label: above its point, at the first free spot
            label.set_horizontalalignment("left")
            for k in range(80):
                label.xyann = (6, 5 + k * height)
                if not any(text_box(label).expanded(1.02, 1.1).overlaps(other) for other in placed):
                    break
        placed.append(text_box(label))
        previous_of[id(label.axes)] = placed[-1]


LEADER = {"arrowstyle": "-", "color": "0.55", "lw": 0.5, "shrinkA": 0, "shrinkB": 4}

def _owner(row: dict, rows: list[dict]) -> str:
    """How a label names the model of its file, when a panel has several: the zoo's short name (exp13 for
    resnet101-exp13) when that tells the artifacts apart, else the artifact folder."""
    artifacts = {r["artifact"] for r in rows if r["format"] != "pytorch"}
    if len(artifacts) < 2:
        return ""
    models = {r["artifact"]: str(r.get("model") or r["artifact"]).removeprefix("resnet101-") for r in rows}
    return f"{models[row['artifact']]}: " if len(set(models.values())) == len(models) else f"{row['artifact']}: "


#: thread count -> marker shape (colour tells the files apart)
THREAD_MARKERS = {1: "o", 2: "s", 3: "v", 4: "^", 6: "p", 8: "D"}


def accuracy_vs_latency(data: ReportData):
    """One panel per device: every measured file at every thread count (colour: format and precision; shape:
    threads), the Pareto front joined by a line and labelled. The y axis is the whole-test-split accuracy measured
    at export; a row without it (a file benched from elsewhere with no dataset) is in the table, not on this axis,
    so a sample's score never sits among test scores."""
    devices = sorted({r["device"] for r in data.deployment if r["p50_ms"] is not None and r["test_acc"] is not None})
    if not devices:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    figure, axes = plt.subplots(1, len(devices), figsize=(7.2 * len(devices), 4.8), squeeze=False)
    kinds = sorted({(r["format"], r["precision"]) for r in data.deployment})
    palette = plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")
    colours = {kind: palette(i % palette.N) for i, kind in enumerate(kinds)}
    labels = []
    for axis, device in zip(axes[0], devices):
        rows = [r for r in data.deployment if r["device"] == device and r["p50_ms"] is not None
                and r["test_acc"] is not None]
        threads = sorted({r["threads"] or 1 for r in rows})
        for row in rows:
            axis.scatter(row["p50_ms"], 100 * row["test_acc"], s=48, alpha=0.9, color=colours[(row["format"], row["precision"])],
                         marker=THREAD_MARKERS.get(row["threads"] or 1, "P"), edgecolors="black", linewidths=0.4)
        front = pareto_front([r for r in rows if r["format"] != "pytorch"])
        if front:
            axis.plot([r["p50_ms"] for r in front], [100 * r["test_acc"] for r in front], "k--", lw=1)
            for row in front:
                text = f"{_owner(row, rows)}{row['file'].removeprefix('model.')} t{row['threads']}"
                labels.append(axis.annotate(text, (row["p50_ms"], 100 * row["test_acc"]), fontsize=7,
                                            xytext=(6, 5), textcoords="offset points", arrowprops=LEADER))
        _x_axis(axis, [r["p50_ms"] for r in rows], "p50 latency, batch 1 (ms)")
        _accuracy_limits(axis, [100 * r["test_acc"] for r in rows])
        axis.set_ylabel("test top-1 (%), whole test split")
        axis.set_title(f"{device}: accuracy vs latency")
        axis.grid(True, which="major", alpha=0.3)
        shown = {(r["format"], r["precision"]) for r in rows}
        handles = [Line2D([], [], linestyle="", marker="o", color=colours[k], markeredgecolor="black",
                          markeredgewidth=0.4, label=f"{k[0]} {k[1]}") for k in kinds if k in shown]
        handles += [Line2D([], [], linestyle="", marker=THREAD_MARKERS.get(t, "P"), color="white",
                           markeredgecolor="black", label=f"{t} thread{'s' * (t > 1)}") for t in threads]
        handles.append(Line2D([], [], color="black", linestyle="--", lw=1, label="Pareto front"))
        axis.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    _spread_labels(figure, labels)
    return figure


def accuracy_vs_params(data: ReportData):
    """Test accuracy against parameters, one point per finished run: drawn only from two runs on (one point
    compares nothing)."""
    rows = [r for r in data.accuracy if r["params"] and r["test_acc"] is not None]
    if len(rows) < 2:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.2, 4.8))
    for method in sorted({r["method"] for r in rows}):
        chosen = [r for r in rows if r["method"] == method]
        axis.scatter([r["params"] for r in chosen], [100 * r["test_acc"] for r in chosen], label=method, s=46)
    labels = [axis.annotate(row["run"], (row["params"], 100 * row["test_acc"]), fontsize=7, xytext=(6, 5),
                            textcoords="offset points", arrowprops=LEADER) for row in rows]
    _x_axis(axis, [r["params"] for r in rows], "parameters", ",.0f")
    _accuracy_limits(axis, [100 * r["test_acc"] for r in rows])
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("accuracy vs parameters")
    axis.grid(True, which="major", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    _spread_labels(figure, labels)
    return figure


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
    return figure


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
    return figure


PLOTS = {  # file name: (title, function)
    "accuracy_vs_latency.png": ("Accuracy vs latency per device", accuracy_vs_latency),
    "accuracy_vs_params.png": ("Accuracy vs parameters", accuracy_vs_params),
    "pruning.png": ("Pruning curves", pruning_curves),
    "bit_widths.png": ("Accuracy versus bit width (simulated fixed-point quantization)", bit_width_curves),
}
