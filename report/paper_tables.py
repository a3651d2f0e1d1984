"""`edgecnn reproduce paper-tables`: the paper's four architecture tables regenerated from the zoo, the published
numbers beside ours, and the accuracy column filled from edgecnn runs on the same dataset when there are any."""

from __future__ import annotations

from pathlib import Path

from .collect import finished_runs, paper_comparable

TABLES = (  # (family, classes, title) in the paper's order
    ("resnet101", 10, "ResNet-101 variants on CIFAR-10"),
    ("resnet101", 100, "ResNet-101 variants on CIFAR-100"),
    ("vgg19", 10, "VGG-19 variants on CIFAR-10"),
    ("vgg19", 100, "VGG-19 variants on CIFAR-100"),
)
DATASET = {10: "cifar10", 100: "cifar100"}


def _run_accuracy(runs_dir: Path) -> dict[tuple[str, str], tuple[float, str]]:
    """(model, dataset) -> (test accuracy, run name) of the newest finished run the paper's rows apply to."""
    return {(config["model"], config["dataset"]): (result["test_acc"], path.name)
            for path, config, result in finished_runs(runs_dir) if paper_comparable(config)}  # oldest first: newest wins


def paper_tables(runs_dir: str | Path = "runs", progress=None) -> list[dict]:
    from edgecnn.compress.zoo.catalog import model_cards
    from edgecnn.compress.zoo.paper import PUBLISHED

    accuracy = _run_accuracy(Path(runs_dir))
    tables = []
    for family, classes, title in TABLES:
        names = sorted((name for name, c in PUBLISHED if c == classes and name.startswith(family + "-")),
                       key=lambda n: int(n.rsplit("exp", 1)[1]))
        rows = []
        for card in model_cards(names, classes, 3, progress=progress):
            paper = card.paper
            acc, run = accuracy.get((card.name, DATASET[classes]), (None, None))
            rows.append({"model": card.name, "techniques": list(card.techniques), "params": card.params,
                         "mflops": round(card.mflops, 2), "size_mib": round(card.size_mib, 2),
                         "paper_params": paper.params, "paper_mflops": paper.mflops,
                         "paper_size_mib": paper.size_mib, "paper_top1": paper.top1, "source": paper.source,
                         "errata": [list(e) for e in paper.errata], "top1": None if acc is None else 100 * acc,
                         "run": run})
        tables.append({"title": title, "dataset": DATASET[classes], "rows": rows})
    return tables


def _cell(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def tables_markdown(tables: list[dict]) -> str:
    parts = ["Ours: measured from the zoo (fvcore MFLOPs, state_dict MiB); paper: published (size = a Lightning "
             "checkpoint, a few KB more; r = recomputed from the authors' code, never published; * = a README typo, "
             "the code gives ours: edgecnn models --json lists each erratum). 'top-1 %' comes from edgecnn runs on the same dataset, '–' where none was run.\n"]
    for table in tables:
        parts.append(f"## {table['title']}\n")
        parts.append("| model | params | paper params | MFLOPs | paper MFLOPs | size MiB | paper size | top-1 % "
                     "| paper top-1 % | run |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in table["rows"]:
            recomputed = "r" if r["source"] == "recomputed" else ""
            typo = {name: "*" for name, *_ in r["errata"]}
            parts.append(f"| {r['model']} | {r['params']:,} | {r['paper_params']:,}{recomputed} | {r['mflops']:.2f} | "
                         f"{r['paper_mflops']:.2f}{typo.get('mflops', '')} | {r['size_mib']:.2f} | "
                         f"{_cell(r['paper_size_mib'], '.2f')}{typo.get('size_mib', '')} | "
                         f"{_cell(r['top1'], '.2f')} | {_cell(r['paper_top1'], '.2f')} | {r['run'] or '–'} |")
        parts.append("")
    return "\n".join(parts)
