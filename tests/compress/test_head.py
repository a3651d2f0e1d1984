"""Clean deployment head (compress/methods/head.py): the logit activation is dropped, the last layer refitted and
written back exactly, and the derived run rebuilds as the clean model."""

import pytest
import torch
from torch import nn

from edgecnn.compress.methods import load_parent
from edgecnn.compress.methods.head import clean_head_run, pooled_features
from edgecnn.compress.rebuild import logit_activation
from edgecnn.compress.zoo import get_model
from edgecnn.errors import EdgecnnError
from edgecnn.compress.rebuild import build_from_checkpoint
from edgecnn.runs import Run, load_checkpoint


def test_clean_head_run_refits_the_last_layer_and_rebuilds_without_the_activation(trained_run, tmp_path):
    run, data_dir = trained_run  # vgg19-exp8: conv 1x1 -> BN -> ReLU on the logits, then the average pool
    parent = load_parent(run.checkpoint(), data_dir)
    assert isinstance(logit_activation(parent.model)[0][-1], nn.ReLU)
    derived, result = clean_head_run(parent, runs_dir=str(tmp_path), name="clean", train_images=400)
    fitted = result | Run(derived.path).config["lineage"]
    assert fitted["method"] == "clean-head" and result["status"] == "finished"
    head = (derived.path / "head.json").read_text()
    assert '"removed": "ReLU"' in head
    import json

    record = json.loads(head)
    assert record["train_images"] == 400 and record["train_loss_clean"] < record["train_loss_start"]

    payload = load_checkpoint(derived.path / "best.pt")
    assert payload["head"] == "clean"
    model = build_from_checkpoint(payload).eval()
    block = model.head[0]
    assert isinstance(block[-1], nn.Identity)
    # the refit lives in the conv and the BatchNorm: the model's logits are the fitted linear map of the pooled
    # features, and no longer clipped at zero
    images = parent.data.test
    features = pooled_features(model, images, parent.data.mean, parent.data.std).double()
    conv, bn = block[0], block[1]
    weight = conv.weight.detach().flatten(1).double()
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    expected = (features @ weight.T - bn.running_mean.double()) * scale + bn.bias.detach().double()
    from edgecnn.export.pipeline import torch_logits

    logits = torch.from_numpy(torch_logits(model, images.images, parent.data.mean, parent.data.std)).double()
    assert torch.allclose(logits, expected, atol=1e-4)
    assert (logits < 0).any()
    assert abs(result["test_acc"] - fitted["parent_test_acc"]) < 0.15  # a refit, not a different model


def test_a_head_without_a_logit_activation_is_refused():
    with pytest.raises(EdgecnnError, match="no activation on its logits"):
        logit_activation(get_model("resnet18", 10, 3))
