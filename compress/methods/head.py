"""A clean deployment head: the paper's conv-only heads without the activation on the logits.

The paper's conv-only heads (ResNet-101 exp 7-9 and 11-14: ReLU6; VGG-19 exp 7-13: ReLU) end in conv 1x1 -> BN ->
activation -> average pool, so every logit is clipped to [0, 6] (or [0, inf)): classes the network is sure are
wrong all sit at exactly 0, the two best logits can tie (`top1_ties` in export.json), and an int8 output spends
its 256 levels on a clipped range. Removing the activation changes the function, so the last layer is fitted
again. Without the activation the head is linear and commutes with the average pool:

    logits = BN(conv(mean_hw(features))) = W @ mean_hw(features) + b

so fitting it is multinomial logistic regression on each training image's pooled features, computed once (no
augmentation, 10,000 training images by default: 88-960 features and 10-100 classes need no more), solved by
L-BFGS in seconds. The cost is one inference pass over those images and the validation split, instead of epochs
of back-propagation through the network. The fit
starts from the faithful head's own W and b (L2 on W, full-batch L-BFGS), and is written back into the same conv
and BatchNorm (BN set to identity plus the bias), so the checkpoint keeps the zoo model's keys; only
`"head": "clean"` in the checkpoint tells `build_from_checkpoint` to drop the activation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgecnn.compress.layers.ops import bn_affine
from edgecnn.compress.rebuild import conv_head, logit_activation
from edgecnn.data import Dataset, Split, normalize

FIT_DEFAULTS = {"weight_decay": 1e-4, "iterations": 100, "train_images": 10_000, "seed": 0}

@torch.no_grad()
def pooled_features(model: nn.Module, split: Split, mean, std, batch_size: int = 500, tick=None) -> torch.Tensor:
    """Average-pooled input of the head's last conv, (N, C), for every image of `split` (eval mode)."""
    _, conv, _ = conv_head(model)
    captured: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].mean(dim=(2, 3))))
    model.eval()
    try:
        for start in range(0, len(split), batch_size):
            model(normalize(split.images[start:start + batch_size], mean, std))
            if tick:
                tick(min(batch_size, len(split) - start))
    finally:
        hook.remove()
    return torch.cat(captured)


def _head_as_linear(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    weight = conv.weight.detach().flatten(1).double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(len(weight), dtype=torch.float64)
    if bn is None:
        return weight, bias
    scale, shift = bn_affine(bn)
    return weight * scale[:, None], bias * scale + shift


@torch.no_grad()
def _write_linear(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, weight: torch.Tensor, bias: torch.Tensor) -> None:
    conv.weight.copy_(weight.view_as(conv.weight).to(conv.weight.dtype))
    if bn is None:  # logit_activation checked that the conv then has a bias
        conv.bias.copy_(bias.to(conv.bias.dtype))
        return
    if conv.bias is not None:
        conv.bias.zero_()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)  # var + eps = 1: the BatchNorm becomes "+ bias"
    bn.weight.fill_(1.0)
    bn.bias.copy_(bias.to(bn.bias.dtype))


def fit_clean_head(model: nn.Module, data: Dataset, *, weight_decay: float = 1e-4, iterations: int = 100,
                   train_images: int | None = 10_000, seed: int = 0, tick=None) -> dict:
    """Drop the logit activation of `model` (in place) and fit its last layer on `train_images` training images
    (a seeded subset; None = all); returns accuracies and settings."""
    block, index, conv, bn = logit_activation(model)
    subset = data.train
    if train_images is not None and train_images < len(subset):
        pick = torch.randperm(len(subset), generator=torch.Generator().manual_seed(seed))[:train_images].sort().values
        subset = Split(subset.images[pick], subset.labels[pick])
    train = pooled_features(model, subset, data.mean, data.std, tick=tick).double()
    val = pooled_features(model, data.val, data.mean, data.std, tick=tick).double()
    train_labels = torch.as_tensor(subset.labels).long()
    val_labels = torch.as_tensor(data.val.labels).long()

    # the faithful head clips before pooling, so its accuracy comes from the network itself
    from edgecnn.compress.train.loop import evaluate

    _, correct, count, _ = evaluate(model, data.val, data.mean, data.std)
    faithful_val, removed = correct / count, type(block[index]).__name__

    weight, bias = _head_as_linear(conv, bn)
    weight, bias = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(train @ weight.T + bias, train_labels) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    start_val = _accuracy(val @ weight.detach().T + bias.detach(), val_labels)  # activation simply removed
    start_loss = float(closure().detach())
    optimizer.step(closure)
    end_loss = float(closure().detach())
    fitted_val = _accuracy(val @ weight.detach().T + bias.detach(), val_labels)
    _write_linear(conv, bn, weight.detach(), bias.detach())
    block[index] = nn.Identity()
    return {"val_acc_faithful": faithful_val, "val_acc_activation_removed": start_val, "val_acc_clean": fitted_val,
            "train_loss_start": start_loss, "train_loss_clean": end_loss, "train_images": len(train), "seed": seed,
            "solver": "L-BFGS", "iterations": iterations, "weight_decay": weight_decay, "removed": removed}


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean())


def clean_head_run(parent, *, runs_dir: str | None = None, name: str | None = None, tick=None, **fit) -> tuple:
    """Derive a run from `parent` (lineage.Parent) with the clean head fitted; returns (DerivedRun, result)."""
    import copy

    from .lineage import DerivedRun

    model = copy.deepcopy(parent.model).eval()
    logit_activation(model)  # refuse a model without the quirk before creating a run directory
    settings = FIT_DEFAULTS | fit
    run = DerivedRun(parent, "clean-head", settings, runs_dir, name)
    fitted = fit_clean_head(model, parent.data, tick=tick, **settings)
    run.write_json("head.json", fitted)
    run.save(model, "best.pt", head="clean")
    return run, run.finish(model, **{k: v for k, v in fitted.items() if k.startswith("val_acc")})


def clean_head_for(checkpoint: Path, *, runs_dir: str | None = None, data_dir: str | None = None,
                   progress=None) -> Path:
    """The checkpoint of `checkpoint`'s clean-head run (<run>-head-clean beside it): the checkpoint itself when its
    head is clean already, the derived run made before when its lineage names this checkpoint, else fitted now.
    `progress` is an edgecnn.progress.Progress."""
    import json

    from edgecnn.errors import EdgecnnError
    from edgecnn.progress import Progress
    from edgecnn.runs import load_checkpoint, runs_root

    from .lineage import load_parent

    progress = progress or Progress()
    checkpoint = Path(checkpoint)
    if load_checkpoint(checkpoint).get("head") == "clean":
        return checkpoint
    run_name = checkpoint.parent.name if (checkpoint.parent / "config.json").is_file() else checkpoint.stem
    existing = runs_root(runs_dir) / f"{run_name}-head-clean"
    if (existing / "result.json").is_file():
        lineage = json.loads((existing / "config.json").read_text()).get("lineage", {})
        if Path(lineage.get("parent_checkpoint", "")).resolve() == checkpoint.resolve():
            progress.note(f"using the clean head fitted before: {existing}")
            return existing / "best.pt"
        raise EdgecnnError(f"{existing} exists but was derived from {lineage.get('parent_checkpoint')}; "
                           "remove it or run 'edgecnn compress clean-head --name ...'")
    if existing.exists():
        raise EdgecnnError(f"{existing} exists but has no result.json (an interrupted clean-head fit?); remove it "
                           "and run again")
    result_run, result = clean_head_with_progress(load_parent(checkpoint, data_dir), runs_dir, existing.name, progress)
    progress.note(f"clean head fitted: {result_run.path} (test {result['parent_test_acc']:.2%} -> "
                  f"{result['test_acc']:.2%})")
    return result_run.path / "best.pt"


def clean_head_with_progress(parent, runs_dir, name, progress, **fit):
    """clean_head_run with a progress task over the images whose pooled features it computes (`fit`: FIT_DEFAULTS
    keys)."""
    total = min((FIT_DEFAULTS | fit)["train_images"], len(parent.data.train)) + len(parent.data.val)
    with progress.task("pooled features of the training and validation images", total) as tick:
        return clean_head_run(parent, runs_dir=runs_dir, name=name, tick=tick, **fit)
