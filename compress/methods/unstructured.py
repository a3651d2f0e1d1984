"""The paper's pruning (spec §6): global L1 unstructured pruning of every ``nn.Conv2d`` weight with
``torch.nn.utils.prune``, 20 % of the still-unpruned weights per step, a fine-tune after each step.

Sparsity shrinks nothing by itself (masks are dense tensors; the paper's authors say so); the masks are made
permanent before a checkpoint is written, and export reports the gzip size of each file, where zeros do pay.
The "non-zero" column follows the paper's tables (§4.5): unpruned conv weights plus every Linear weight.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune


def prunable_convs(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Exactly the paper's selection: modules whose type *is* nn.Conv2d (stem, pointwise, depthwise, grouped,
    shortcut and classifier convs); Linear layers, BatchNorm and biases are never pruned."""
    return [(module, "weight") for module in model.modules() if type(module) is nn.Conv2d]


def prune_step(model: nn.Module, amount: float = 0.2) -> None:
    """One global L1 step: remove `amount` of the conv weights not yet pruned (PyTorch's pruning container applies
    the fraction to the remaining weights, so each step removes round(amount x remaining))."""
    prune.global_unstructured(prunable_convs(model), pruning_method=prune.L1Unstructured, amount=amount)


def conv_weight_counts(model: nn.Module) -> tuple[int, int]:
    """(unpruned conv weights, all conv weights)."""
    kept = total = 0
    for module, name in prunable_convs(model):
        mask = getattr(module, f"{name}_mask", None)
        total += getattr(module, name).numel()
        kept += int(mask.sum()) if mask is not None else getattr(module, name).numel()
    return kept, total


def nonzero_count(model: nn.Module) -> int:
    """The paper's "Non-zeroed" column: unpruned conv weights + all Linear weights (BN and biases excluded)."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return conv_weight_counts(model)[0] + linear


def expected_nonzero(conv_weights: int, linear_weights: int, steps: int, amount: float = 0.2) -> list[int]:
    """The paper's column computed without a model: step k keeps r_k = r_(k-1) - round(amount x r_(k-1))."""
    remaining, counts = conv_weights, []
    for _ in range(steps):
        remaining -= round(amount * remaining)
        counts.append(remaining + linear_weights)
    return counts


def make_permanent(model: nn.Module) -> None:
    """Bake the masks into plain weights (prune.remove), so the state_dict is the zoo model's own."""
    for module, name in prunable_convs(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            prune.remove(module, name)


def iterative_prune(parent, *, steps: int = 10, amount: float = 0.2, finetune_config=None, runs_dir=None,
                    name=None, reporter=None, on_step=None):
    """The paper's loop: prune a step, fine-tune, test, checkpoint; returns (DerivedRun, table rows).

    Row 0 is the parent; its "nonzero" is the total trainable parameter count, the basis the paper's 0 % rows use
    (the other rows count unpruned conv + Linear weights; spec §4.5 notes the inconsistency and so do we)."""
    import copy
    from dataclasses import asdict

    from edgecnn.compress.train.loop import evaluate
    from edgecnn.compress.zoo import count_params

    from .finetune import FinetuneConfig, finetune
    from .lineage import DerivedRun

    if not 0 < amount < 1 or steps < 1:
        raise ValueError("pruning needs 0 < amount < 1 and at least one step")
    config = finetune_config or FinetuneConfig()
    run = DerivedRun(parent, "prune", {"steps": steps, "amount": amount, "finetune": asdict(config)}, runs_dir, name)
    model, data = parent.model, parent.data
    _, conv_total = conv_weight_counts(model)

    def test_acc() -> float:
        _, correct, count, _ = evaluate(model, data.test, data.mean, data.std)
        return correct / count

    rows = [{"step": 0, "sparsity": 0.0, "nonzero": count_params(model), "test_acc": test_acc(), "val_acc": None,
             "epochs": 0, "seconds": 0.0}]
    if on_step:
        on_step(rows[0])
    history: list[dict] = []
    for step in range(1, steps + 1):
        prune_step(model, amount)
        records = finetune(model, data, config, reporter=reporter)
        history += [{"step": step, **r} for r in records]
        kept, _ = conv_weight_counts(model)
        rows.append({"step": step, "sparsity": 1 - kept / conv_total, "nonzero": nonzero_count(model),
                     "test_acc": test_acc(), "val_acc": max(r["val_acc"] for r in records), "epochs": len(records),
                     "seconds": sum(r["seconds"] for r in records)})
        baked = copy.deepcopy(model)
        make_permanent(baked)
        run.save(baked, f"steps/step-{step:02d}.pt", sparsity=rows[-1]["sparsity"])
        run.log_steps("pruning.json", rows, history)
        if on_step:
            on_step(rows[-1])
    make_permanent(model)
    run.save(model, "best.pt", sparsity=rows[-1]["sparsity"])
    run.finish(model, sparsity=rows[-1]["sparsity"], pruning=rows)
    return run, rows

