"""BatchNorm folded into the convolution before it: one conv computing what conv -> BatchNorm computed (eval mode).

Exact for any network torch.fx can trace, so it serves both the export's rewrites of models from outside the zoo
(export/reparam.py) and the bit-width sweep (compress/methods/bits.py), where weights are quantized as a deployed
file holds them: with the BatchNorm's scale already inside.
"""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.errors import describe_error


def fold_batchnorms(model: nn.Module) -> tuple[nn.Module, int | str]:
    """A torch.fx graph module of `model` (eval mode) with every BatchNorm2d that follows a Conv2d (its only user)
    folded into it; returns (module, folds), or (model, why) when torch.fx cannot trace it. The layers are changed
    in place: pass a copy."""
    model.eval()
    split_norm_act(model)
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as error:  # noqa: BLE001 - data-dependent Python control flow; the model still runs unfolded
        return model, f"not traceable by torch.fx: {describe_error(error, 160)}"
    modules = dict(traced.named_modules())
    folds = 0
    for node in list(traced.graph.nodes):
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not (isinstance(modules.get(node.target), nn.BatchNorm2d) and type(modules[node.target]) is nn.BatchNorm2d
                and isinstance(source, torch.fx.Node) and source.op == "call_module"
                and type(modules.get(source.target)) is nn.Conv2d and len(source.users) == 1
                and modules[node.target].track_running_stats):
            continue
        fold_into(modules[source.target], modules[node.target])
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
        folds += 1
    traced.graph.eliminate_dead_code()
    traced.graph.lint()
    traced.recompile()
    traced.delete_all_unused_submodules()
    return traced.eval(), folds


def split_norm_act(model: nn.Module) -> None:
    """timm's BatchNormAct2d (a BatchNorm2d subclass with its activation inside) as BatchNorm2d -> drop -> act, the
    same function in eval mode, so that the fold sees the plain BatchNorm."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d) and type(child) is not nn.BatchNorm2d \
                    and isinstance(getattr(child, "act", None), nn.Module):
                plain = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
                plain.load_state_dict({k: v for k, v in child.state_dict().items()
                                       if k in plain.state_dict()}, strict=True)
                setattr(parent, name, nn.Sequential(plain, getattr(child, "drop", nn.Identity()), child.act).eval())


@torch.no_grad()
def fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """A conv followed by `bn` (eval mode) as one conv, in place: torch's own fusion, computed in float64."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    def double(tensor):
        return None if tensor is None else tensor.double()

    weight, bias = fuse_conv_bn_weights(conv.weight.double(), double(conv.bias), bn.running_mean.double(),
                                        bn.running_var.double(), bn.eps, double(bn.weight), double(bn.bias))
    conv.weight, conv.bias = nn.Parameter(weight.to(conv.weight.dtype)), nn.Parameter(bias.to(conv.weight.dtype))
