"""Depth pruning: take out whole residual blocks (those with an identity shortcut), then fine-tune.

Why, next to channel pruning: at batch 1 on a CPU these nets are ~100 operators deep and each operator has a fixed
cost, so channel pruning cuts the multiply-adds far more than the time (docs/compression.md). Removing a block removes its operators. A residual net tolerates it (Veit et al.
2016, "Residual networks behave like ensembles of relatively shallow networks"): the block's output is x plus a
correction, and the blocks downstream are fine-tuned to do without the correction.

Which blocks: each candidate is removed alone and the validation accuracy on a subset is measured (as the
sensitivity scan of structured pruning does for layers); the least harmful go. The removed blocks are recorded by
name in every checkpoint (`removed_blocks`), so `build_from_checkpoint` rebuilds the model from the zoo entry.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgecnn.compress.layers import RemovedBlock
from edgecnn.compress.rebuild import activation_left, remove_blocks, removable_blocks, replace_module
from edgecnn.errors import EdgecnnError


def block_sensitivity(model: nn.Module, score: Callable[[nn.Module], float]) -> list[dict]:
    """Each removable block taken out alone: {"block", "drop"} (score lost), least harmful first."""
    baseline = score(model)
    rows = []
    for name in removable_blocks(model):
        block = replace_module(model, name, RemovedBlock(activation_left(model.get_submodule(name))))
        try:
            rows.append({"block": name, "drop": baseline - score(model)})
        finally:
            replace_module(model, name, block)
    return sorted(rows, key=lambda r: r["drop"])


def depth_prune(parent, *, blocks: int, scan_images: int = 2000, finetune_config=None, runs_dir=None, name=None,
                reporter=None, on_step=None):
    """Remove the `blocks` least harmful residual blocks of the parent, fine-tune once; returns (DerivedRun, rows)
    with the same table rows as structured pruning (step 0 = the parent)."""
    from dataclasses import asdict

    from .finetune import FinetuneConfig, finetune  # noqa: I001 - below lineage in the import order
    from .lineage import DerivedRun, step_row, val_subset_score

    config = finetune_config or FinetuneConfig()
    config.check()
    model = parent.model
    candidates = removable_blocks(model)
    if not candidates:
        raise EdgecnnError(f"{parent.payload['model']} has no residual block with an identity shortcut to remove")
    if not 1 <= blocks < len(candidates):
        raise EdgecnnError(f"--blocks must be between 1 and {len(candidates) - 1}: {parent.payload['model']} has "
                           f"{len(candidates)} removable blocks")

    rows = [step_row(model, parent, 0, [])]
    if on_step:
        on_step(rows[0])
    scan = block_sensitivity(model, val_subset_score(parent.data, scan_images))
    chosen = sorted(r["block"] for r in scan[:blocks])
    settings = {"blocks": blocks, "removed": chosen, "scan_images": scan_images, "finetune": asdict(config)}
    run = DerivedRun(parent, "depth", settings, runs_dir, name)
    run.write_json("sensitivity.json", scan)
    remove_blocks(model, chosen)
    records = finetune(model, parent.data, config, reporter=reporter)
    rows.append(step_row(model, parent, 1, records))
    run.log_steps("depth.json", rows, [{"step": 1, **r} for r in records])
    if on_step:
        on_step(rows[-1])
    run.save(model, "best.pt")
    run.finish(model, depth=rows)
    return run, rows
