"""Models from outside the zoo: timm architectures and a user's factory, under the names every stage takes."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from edgecnn.compress.rebuild import build_from_checkpoint
from edgecnn.compress.train import TrainConfig, train
from edgecnn.compress.zoo import count_mflops, count_params, get_model, model_slug, resolve
from edgecnn.data import write_synthetic_cifar
from edgecnn.errors import EdgecnnError
from edgecnn.runs import load_checkpoint

USER_NET = '''
import torch
from torch import nn


def build(num_classes, in_chans=3):
    return nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def fixed():  # takes nothing: always 10 classes
    return build(10)


def raises(num_classes):
    raise ValueError("no such width")


def not_a_module(num_classes):
    return [1, 2, 3]


def wrong_output(num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes + 1))
'''


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_cifar(root, 10, train_size=200, test_size=60, seed=3)
    return str(root)


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(USER_NET)
    return path


def tiny(data_dir, runs_dir, model, name, **extra):
    return TrainConfig(model=model, dataset="cifar10", data_dir=data_dir, runs_dir=str(runs_dir), name=name, epochs=1,
                       batch_size=50, lr=0.05, **extra)


@pytest.mark.parametrize("arch,stem", [("resnet18", "conv1"), ("mobilenetv3_small_050", "conv_stem"),
                                       ("regnetx_002", "stem"), ("repvgg_a0", "stem")])
def test_timm_models_get_a_stride_one_stem_for_32px_images(arch, stem):
    model = get_model(f"timm:{arch}", num_classes=7, in_chans=1)
    assert {m.stride for m in model.get_submodule(stem).modules() if isinstance(m, nn.Conv2d)} == {(1, 1)}
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    with torch.no_grad():
        features = model.eval().forward_features(torch.zeros(1, 1, 32, 32))
    assert features.shape[-1] >= 2  # 32 px through a 224-px network's strides would end at 1x1 or fail
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
    assert count_params(model) > 0 and count_mflops(model, 1) > 0  # fvcore, as for the zoo


def test_unknown_timm_name_names_the_nearest():
    with pytest.raises(EdgecnnError, match=r"unknown timm model 'mobilenetv3_small_05'; did you mean .*"
                                           r"mobilenetv3_small_050") as info:
        resolve("timm:mobilenetv3_small_05")
    assert "\n" not in str(info.value)


def test_pretrained_weights_load_through_timm_from_a_local_file(tmp_path):
    """timm's own loading path: the file's 1000-class head is dropped, its RGB stem summed to one channel."""
    import timm

    source = timm.create_model("mobilenetv3_small_050", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    model = get_model("timm:mobilenetv3_small_050", num_classes=10, in_chans=1, pretrained=str(tmp_path / "weights.pth"))
    block = "blocks.2.0.conv_pw.weight"
    assert torch.equal(model.state_dict()[block], source.state_dict()[block])
    assert torch.allclose(model.conv_stem.weight, source.conv_stem.weight.sum(1, keepdim=True))
    assert model.classifier.out_features == 10
    with pytest.raises(EdgecnnError, match="no such file"):
        get_model("timm:mobilenetv3_small_050", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(EdgecnnError, match="--pretrained is for timm models"):
        get_model("exp13", pretrained=str(tmp_path / "weights.pth"))


def test_a_timm_run_records_its_origin_and_rebuilds_exactly(data_dir, tmp_path):
    run = train(tiny(data_dir, tmp_path, "timm:mobilenetv3_small_050", None))
    assert run.path.name.startswith("timm-mobilenetv3_small_050-cifar10-fast-s0-")
    source = run.config["model_source"]
    assert source["kind"] == "timm" and source["architecture"] == "mobilenetv3_small_050" and source["timm"]
    payload = load_checkpoint(run.checkpoint())
    assert payload["model"] == "timm:mobilenetv3_small_050" and payload["model_source"] == source
    rebuilt = build_from_checkpoint(payload).eval()
    x = torch.randn(4, 3, 32, 32)
    trained = get_model(payload["model"], 10, 3)
    trained.load_state_dict(payload["state_dict"])
    with torch.no_grad():
        assert torch.equal(rebuilt(x), trained.eval()(x))


def test_a_user_factory_file_trains_and_its_checkpoint_refuses_another_factory(data_dir, tmp_path, user_file):
    name = f"{user_file}:build"
    run = train(tiny(data_dir, tmp_path / "runs", name, "mine"))
    source = run.config["model_source"]
    assert source["kind"] == "factory" and source["factory"] == name
    assert source["kwargs"] == {"num_classes": 10, "in_chans": 3} and len(source["file_sha256"]) == 64
    payload = load_checkpoint(run.checkpoint())
    assert payload["model"] == name and build_from_checkpoint(payload)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(EdgecnnError, match=r"holds .*my_net.py:build, not .*my_net.py:fixed"):
        build_from_checkpoint(payload, model=f"{user_file}:fixed")
    assert model_slug(name) == "my_net-build"



def test_a_factory_file_is_recorded_by_its_absolute_path(user_file, monkeypatch):
    monkeypatch.chdir(user_file.parent)
    assert resolve("my_net.py:build") == f"{user_file.resolve()}:build"


def test_a_factory_of_an_importable_module_runs_from_the_cli(data_dir, tmp_path, user_file):
    result = subprocess.run([sys.executable, "-m", "edgecnn", "train", "--model", "my_net:fixed", "--dataset", "cifar10",
                             "--data-dir", data_dir, "--runs-dir", str(tmp_path / "runs"), "--epochs", "1",
                             "--batch-size", "50", "--name", "cli"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**__import__("os").environ, "PYTHONPATH": str(user_file.parent)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "runs" / "cli" / "config.json").read_text())
    assert config["model"] == "my_net:fixed" and config["model_source"]["kwargs"] == {}


@pytest.mark.parametrize("factory,message", [
    ("raises", "the factory raised ValueError: no such width"),
    ("not_a_module", "the factory returned a list, not a torch.nn.Module"),
    ("wrong_output", r"gives \(2, 11\) for a \(2, 3, 32, 32\) batch; a classifier of 10 classes gives \(2, 10\)"),
    ("missing", "has no 'missing'"),
])
def test_a_bad_factory_is_one_line(user_file, factory, message):
    with pytest.raises(EdgecnnError, match=message) as info:
        get_model(f"{user_file}:{factory}", num_classes=10, in_chans=3)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name,message", [("nowhere.py:build", "no such file nowhere.py"),
                                          ("no_such_module_xyz:build", "importing no_such_module_xyz failed"),
                                          ("file.py:", "a factory is named module.path:function")])
def test_a_factory_that_cannot_be_found_is_one_line(tmp_path, name, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.py").write_text("")
    with pytest.raises(EdgecnnError, match=message):
        get_model(name)


def test_a_factory_file_with_a_syntax_error_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text(textwrap.dedent("def build(:\n"))
    with pytest.raises(EdgecnnError, match="importing .*broken.py failed: SyntaxError"):
        get_model(f"{tmp_path / 'broken.py'}:build")


@pytest.mark.parametrize("arch,blocks", [("mobilenetv3_small_050", "InvertedResidual"), ("test_resnet", "BasicBlock"),
                                         ("ghostnet_050", "GhostBottleneck")])
def test_timm_models_take_structured_and_depth_pruning_and_rebuild_exactly(arch, blocks):
    """Both records of a checkpoint on timm's own layers: the widths of subclassed BatchNorms (BatchNormAct2d) and
    timm's residual blocks taken out; the rebuilt model computes what the pruned one did, it trains (in-place
    activations), and the export's generic rewrite stays exact on it."""
    from edgecnn.compress.methods.structured import make_pruner
    from edgecnn.compress.rebuild import remove_blocks, removable_blocks, removed_blocks, structure_of
    from edgecnn.compress.zoo.measure import settle_batchnorm
    from edgecnn.export.reparam import generic_rewrite

    name = f"timm:{arch}"
    torch.manual_seed(0)
    model = settle_batchnorm(get_model(name, 10, 1), [torch.randn(8, 1, 32, 32)]).eval()
    candidates = removable_blocks(model)
    assert candidates and all(type(model.get_submodule(n)).__name__ == blocks for n in candidates)
    remove_blocks(model, candidates[:1])
    example = torch.randn(2, 1, 32, 32)
    make_pruner(model, example, 0.3).step()
    payload = {"model": name, "num_classes": 10, "in_chans": 1, "state_dict": model.state_dict(),
               "structure": structure_of(model), "removed_blocks": removed_blocks(model)}
    assert any(type(model.get_submodule(layer)).__name__ == "BatchNormAct2d" for layer in payload["structure"]) \
        or arch in ("test_resnet", "ghostnet_050")
    rebuilt = build_from_checkpoint(payload).eval()
    assert count_params(rebuilt) == count_params(model) < count_params(get_model(name, 10, 1))
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
        rewritten, counts = generic_rewrite(rebuilt, timm_hooks=True)
        assert counts["batchnorm_folded"] > 0
        torch.testing.assert_close(rewritten(x), model(x), rtol=0, atol=1e-5)
    rebuilt.train()(x).sum().backward()
