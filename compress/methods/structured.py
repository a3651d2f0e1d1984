"""Structured (filter / channel) pruning with Torch-Pruning: the pruned model is a plain dense model with fewer
channels, so it has fewer parameters and FLOPs, smaller files and runs faster on any runtime.

Torch-Pruning's dependency graph couples the layers that must lose the same channels (residual adds, the ghost
module's concat of a depthwise conv with its own input, Fire's concat, depthwise convs, grouped convs pruned evenly
per group). Three things it cannot re-index exactly are left whole, so pruning never changes what a kept channel
computes:
- a ChannelShuffle's channels (Torch-Pruning would map pruned indices through the permutation as if it were the
  identity; VainF/Torch-Pruning#45),
- DiCE units (their height- and width-wise convs treat spatial axes as channels),
- channel-multiplier convs (groups == in_channels != out_channels, VGG-19 Fire's expand3x3), whose input channels
  own several output channels each,
and the classifier's outputs (the classes). Any coupled group touching one of them is not pruned.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from edgecnn.compress.layers.dice import DiCE
from edgecnn.compress.layers.shuffle import ChannelShuffle
from edgecnn.errors import EdgecnnError

IMPORTANCE = {"l1": lambda: tp.importance.MagnitudeImportance(p=1), "l2": lambda: tp.importance.MagnitudeImportance(p=2),
              "bn": lambda: tp.importance.BNScaleImportance()}


class _Opaque(tp.pruner.function.BasePruningFunc):
    """Registered for the modules whose channels stay whole: they become graph nodes that block their groups."""

    def prune_out_channels(self, layer: nn.Module, idxs) -> nn.Module:
        raise AssertionError(f"{type(layer).__name__} channels must not be pruned")  # blocked groups never get here

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module):
        return None

    get_in_channels = get_out_channels


OPAQUE = (ChannelShuffle, DiCE)
_CUSTOM = {kind: _Opaque() for kind in OPAQUE}


def classifier_layer(model: nn.Module) -> nn.Module:
    """The last conv or linear layer in definition order: the one that produces the class scores."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise EdgecnnError("the model has no conv or linear layer to prune")
    return layers[-1]


def _multiplier(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and 1 < module.groups == module.in_channels != module.out_channels


def ignored_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Root layers whose coupled group touches a shuffle, a DiCE unit or a channel-multiplier conv, the opaque
    modules themselves, and the classifier."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, customized_pruners=_CUSTOM)
    ignored = {classifier_layer(model)} | {m for m in model.modules() if isinstance(m, OPAQUE)}
    for group in graph.get_all_groups(ignored_layers=[], root_module_types=[nn.Conv2d, nn.Linear]):
        members = {dep.target.module for dep, _ in group}
        if any(isinstance(m, OPAQUE) or _multiplier(m) for m in members):
            ignored |= {m for m in members if isinstance(m, (nn.Conv2d, nn.Linear))}
    order = {m: i for i, m in enumerate(model.modules())}  # a stable order, as Torch-Pruning takes a list
    return sorted(ignored, key=order.__getitem__)


def make_pruner(model: nn.Module, example: torch.Tensor, ratio: float, *, importance: str = "l1",
                global_pruning: bool = False, steps: int = 1, layer_ratios: dict[nn.Module, float] | None = None,
                extra_ignored: list[nn.Module] = (), round_to: int | None = None) -> tp.pruner.MetaPruner:
    """A Torch-Pruning MetaPruner reaching channel-pruning `ratio` in `steps` equal steps (call .step() each time).

    global_pruning ranks channels across all layers (uneven widths); otherwise every layer loses `ratio` of its
    channels. layer_ratios overrides the ratio of some root layers (from a sensitivity scan)."""
    if not 0 < ratio < 1:
        raise EdgecnnError(f"pruning ratio must be in (0, 1), not {ratio}")
    if any(isinstance(m, DiCE) for m in model.modules()):
        # Torch-Pruning's group search through DiCE's axis permutations does not finish (minutes, then more);
        # until DiCE gets a proper pruner, models with it are refused rather than left hanging.
        raise EdgecnnError("structured pruning does not support models with DiCE units yet "
                           "(resnet101-exp15, vgg19-exp13); use 'edgecnn compress prune' or distill")
    if importance not in IMPORTANCE:
        raise EdgecnnError(f"unknown importance {importance!r}; use {', '.join(IMPORTANCE)}")
    model.eval()
    return tp.pruner.MetaPruner(model, example, importance=IMPORTANCE[importance](), pruning_ratio=ratio,
                                pruning_ratio_dict=layer_ratios or {}, global_pruning=global_pruning,
                                iterative_steps=steps, ignored_layers=ignored_layers(model, example) + list(extra_ignored),
                                customized_pruners=_CUSTOM, round_to=round_to)


def prunable_roots(model: nn.Module, example: torch.Tensor) -> dict[str, nn.Module]:
    """Name -> root layer of every group that can be pruned (what a sensitivity scan tries one at a time)."""
    pruner = make_pruner(model, example, 0.5)
    names = {module: name for name, module in model.named_modules()}
    roots = {}
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=pruner.root_module_types):
        root = group[0].dep.target.module
        roots[names[root]] = root
    return roots


def sensitivity_scan(model: nn.Module, example: torch.Tensor, ratio: float, score) -> list[dict]:
    """Prune each group alone by `ratio` (on a copy) and measure `score(model)` (e.g. validation accuracy on a
    subset), as in the ResNet-18/VGG-16 pruning study: which layers tolerate pruning, which do not."""
    import copy

    baseline, rows, names = score(model), [], list(prunable_roots(model, example))
    for name in names:
        trial = copy.deepcopy(model)
        root = trial.get_submodule(name)
        others = [trial.get_submodule(n) for n in names if n != name]
        pruner = make_pruner(trial, example, ratio, extra_ignored=others)
        pruner.step()
        rows.append({"layer": name, "ratio": ratio, "drop": baseline - score(trial),
                     "channels": getattr(root, "out_channels", getattr(root, "out_features", None))})
    return sorted(rows, key=lambda r: r["drop"])


def iterative_structured(parent, *, ratio: float, steps: int = 1, importance: str = "l1",
                         global_pruning: bool = False, scan_ratio: float | None = None, scan_images: int = 1000,
                         finetune_config=None, runs_dir=None, name=None, reporter=None, on_step=None):
    """Prune channels to `ratio` in `steps` steps with a fine-tune after each; returns (DerivedRun, table rows).

    With scan_ratio, a sensitivity scan (each group pruned alone by scan_ratio, validation accuracy on
    `scan_images` images) sets per-layer ratios first: the most sensitive third of the layers gets half the ratio,
    the least sensitive third 1.5x (capped at 0.9), as in the ResNet-18/VGG-16 study's per-layer pruning."""
    import copy
    from dataclasses import asdict

    from .finetune import FinetuneConfig, finetune
    from .lineage import DerivedRun, step_row, val_subset_score

    config = finetune_config or FinetuneConfig()
    config.check()
    model, data = parent.model, parent.data
    example = data.train.images[:2].float()
    pruner = make_pruner(model, example, ratio, importance=importance, global_pruning=global_pruning, steps=steps)
    if not prunable_roots(model, example):
        raise EdgecnnError(f"nothing in {parent.payload['model']} can be pruned structurally: every channel passes "
                           "through a channel shuffle, a DiCE unit or the classifier")
    settings = {"ratio": ratio, "steps": steps, "importance": importance, "global": global_pruning,
                "scan_ratio": scan_ratio, "finetune": asdict(config)}
    scan = None
    if scan_ratio:
        scan = sensitivity_scan(model, example, scan_ratio, val_subset_score(data, scan_images))
        third = max(1, len(scan) // 3)
        layer_ratios = {model.get_submodule(r["layer"]): ratio * 1.5 if i < third else
                        ratio / 2 if i >= len(scan) - third else ratio for i, r in enumerate(scan)}
        layer_ratios = {m: min(r, 0.9) for m, r in layer_ratios.items()}
        pruner = make_pruner(model, example, ratio, importance=importance, steps=steps, layer_ratios=layer_ratios)
    run = DerivedRun(parent, "structured", settings, runs_dir, name)
    if scan is not None:
        run.write_json("sensitivity.json", scan)

    def row(step, records):
        return step_row(model, parent, step, records)

    rows = [row(0, [])]
    if on_step:
        on_step(rows[0])
    history: list[dict] = []
    for step in range(1, steps + 1):
        pruner.step()
        records = finetune(model, data, config, reporter=reporter)
        history += [{"step": step, **r} for r in records]
        rows.append(row(step, records))
        run.save(copy.deepcopy(model), f"steps/step-{step:02d}.pt")
        run.log_steps("structured.json", rows, history)
        if on_step:
            on_step(rows[-1])
    run.save(model, "best.pt")
    run.finish(model, structured=rows)
    return run, rows

