"""Training: a real (tiny) run, resume equivalence, 2-process DDP against one process, refusing bad checkpoints."""

import json
import os
import subprocess
import sys

import pytest
import torch

from edgecnn.compress.train import RECIPES, TrainConfig, get_recipe, train
from edgecnn.compress.zoo import get_model
from edgecnn.data import write_synthetic_cifar
from edgecnn.errors import EdgecnnError
from edgecnn.compress.rebuild import build_from_checkpoint, find_run, resolve_checkpoint
from edgecnn.runs import Run, list_runs, load_checkpoint

TINY = dict(epochs=2, batch_size=32, lr=0.05)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_cifar(root, 10, train_size=360, test_size=100, seed=3)
    return str(root)


def config(data_dir, runs_dir, name, model="exp13", recipe="fast", **overrides):
    return TrainConfig(model=model, dataset="cifar10", recipe=recipe, data_dir=data_dir, runs_dir=str(runs_dir),
                       name=name, **{**TINY, **overrides})


def test_a_run_learns_and_writes_its_files(data_dir, tmp_path):
    run = train(config(data_dir, tmp_path, "r", epochs=3))
    files = sorted(p.name for p in run.path.iterdir() if p.name != ".edgecnn.lock")  # the writer lock: no data
    assert files == ["best.pt", "config.json", "last.pt", "metrics.jsonl", "result.json"]
    assert [m["epoch"] for m in run.metrics()] == [1, 2, 3]
    result = run.result
    assert result["test_images"] == 100 and result["test_acc"] > 0.5  # 10 classes: chance is 0.1
    assert result["test_acc"] <= result["test_top5"] <= 1
    assert result["params"] == 150_715
    described = run.config["data"]
    assert described["mean"] == [0.4914, 0.4822, 0.4465] and described["sizes"] == {"train": 324, "val": 36,
                                                                                      "test": 100}
    payload = torch.load(run.checkpoint("best"), weights_only=True)  # plain tensors and numbers only
    assert payload["model"] == "resnet101-exp13" and payload["data"]["dataset"] == "cifar10"
    assert set(torch.load(run.checkpoint("last"), weights_only=True)) >= {"optimizer", "scheduler", "history"}
    assert find_run("exp13", "cifar10", tmp_path).path == run.path
    assert oct(run.checkpoint("best").stat().st_mode)[-3:] != "600"  # atomic writes keep normal permissions


class Interrupt(Exception):
    pass


def test_resume_ends_with_the_same_weights(data_dir, tmp_path):
    straight = train(config(data_dir, tmp_path, "straight"))

    def kill_mid_epoch_two(epoch, step):
        if epoch == 1 and step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config(data_dir, tmp_path, "killed"), on_batch=kill_mid_epoch_two)
    killed = tmp_path / "killed"
    assert [m["epoch"] for m in Run(killed).metrics()] == [1]  # epoch 2 died before its checkpoint
    assert not (killed / "result.json").exists()
    resumed = train(resume=killed)
    a = torch.load(straight.checkpoint("last"), weights_only=True)["state_dict"]
    b = torch.load(resumed.checkpoint("last"), weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.result["test_acc"] == straight.result["test_acc"]
    with pytest.raises(EdgecnnError, match="already finished"):
        train(resume=killed)


def test_two_process_ddp_matches_one_process(data_dir, tmp_path):
    """One DDP step over 2 gloo ranks == one step of a process accumulating 2 micro-batches (rank r's shard ==
    micro-batch r). One full-batch step, because over many steps BatchNorm amplifies the last-bit differences of
    summation order (all-reduce vs accumulation) chaotically. vgg19-exp8 also has dead parameters, which DDP must
    be told about."""
    steps = dict(epochs=1, batch_size=324, lr=0.05)  # 324 training images: one global batch, one step
    args = ["--model", "vgg19-exp8", "--dataset", "cifar10", "--data-dir", data_dir, "--runs-dir", str(tmp_path),
            *[f"--{k.replace('_', '-')}={v}" for k, v in steps.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "edgecnn", "train", *args, "--name", "ddp"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = train(config(data_dir, tmp_path, "single", model="vgg19-exp8", grad_accum=2, **steps))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]  # rank 1 wrote nothing of its own
    assert ddp.stderr.count("test accuracy") == 1 and ddp.stdout.count("test accuracy") == 1  # rank 0 speaks
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(single.checkpoint("last"), weights_only=True)["state_dict"]
    torch.manual_seed(0)
    before = get_model("vgg19-exp8", 10, 3).state_dict()  # the seed the runs used -> their initial weights
    weights = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(not torch.equal(a[k], before[k]) for k in weights)  # the step changed the weights
    for key in weights:  # BN running stats differ by design: DDP keeps rank 0's
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2
    assert Run(tmp_path / "ddp").result["test_images"] == 100


SHALLOW_EXP13 = """
from dataclasses import replace

from edgecnn.compress.zoo import get_entry
from edgecnn.compress.zoo.builder import build_resnet


def build(num_classes, in_chans):  # exp13's blocks, at most two per stage row (tests/conftest.py build_zoo_model)
    spec = get_entry("exp13").spec
    rows = tuple(tuple(replace(row, n=min(row.n, 2)) for row in stage) for stage in spec.stages)
    return build_resnet(replace(spec, stages=rows), num_classes, in_chans)
"""


def test_compiled_training_runs_under_torchrun(data_dir, tmp_path):
    """`--compile` under torchrun: with dynamic shapes torch 2.14's inductor failed on exp13's first DDP step on CPU
    (compress/train/loop.py compiles with static shapes). One step of one global batch keeps it to one compile, and
    exp13's blocks at a quarter of its depth (a user's factory file, which each rank imports) keep the compile short."""
    (tmp_path / "shallow.py").write_text(SHALLOW_EXP13)
    args = ["--model", f"{tmp_path / 'shallow.py'}:build", "--dataset", "cifar10", "--data-dir", data_dir,
            "--runs-dir", str(tmp_path),
            "--epochs=1", "--batch-size=324", "--compile", "--name", "compiled"]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "edgecnn", "train", *args], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Run(tmp_path / "compiled").result["test_images"] == 100


def test_checkpoint_of_another_model_or_class_count_is_refused(data_dir, tmp_path):
    run = train(config(data_dir, tmp_path, "r", epochs=1))
    payload = load_checkpoint(run.checkpoint())
    with pytest.raises(EdgecnnError, match="holds resnet101-exp13, not resnet101-exp11"):
        build_from_checkpoint(payload, model="exp11")
    with pytest.raises(EdgecnnError, match="num_classes=10, not 100"):
        build_from_checkpoint(payload, num_classes=100)
    assert isinstance(build_from_checkpoint(payload, model="exp13", num_classes=10), torch.nn.Module)


@pytest.mark.parametrize("content,message", [(None, "checkpoint not found"), (b"garbage", "not a readable checkpoint"),
                                             ("dict", "not an edgecnn checkpoint")])
def test_bad_checkpoints_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content == "dict":
        torch.save({"state_dict": {}}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(EdgecnnError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint_is_refused(data_dir, tmp_path):
    run = train(config(data_dir, tmp_path, "r", epochs=1))
    data = run.checkpoint().read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgecnnError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_no_run_says_how_to_train_one(tmp_path):
    with pytest.raises(EdgecnnError, match="train one with 'edgecnn train --model resnet101-exp13 --dataset cifar10'"):
        resolve_checkpoint(model="exp13", dataset="cifar10", root=str(tmp_path))
    assert list_runs(tmp_path) == []


def test_recipes_follow_the_paper():
    paper2 = get_recipe("paper2")
    assert (paper2.schedule, paper2.lr, paper2.weight_decay, paper2.epochs, paper2.batch_size) == \
        ("onecycle", 0.0125, 2e-5, 150, 128)
    paper1 = get_recipe("paper1")
    assert (paper1.schedule, paper1.lr, paper1.weight_decay, paper1.early_stop) == ("plateau", 0.01, 5e-4, 10)
    assert RECIPES["micronet"].mixup > 0 and RECIPES["micronet"].optimizer == "adamw"
    with pytest.raises(EdgecnnError, match="unknown recipe 'paper3'"):
        get_recipe("paper3")


def test_micronet_recipe_with_mixup_runs(data_dir, tmp_path):
    run = train(config(data_dir, tmp_path, "m", recipe="micronet", epochs=1, model="micronet-densenet"))
    assert run.result["epochs"] == 1


def test_resume_with_a_damaged_config_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EdgecnnError, match="cannot read"):
        train(resume=tmp_path)
    (tmp_path / "config.json").write_text('{"model": "exp13"}')
    with pytest.raises(EdgecnnError, match="not an edgecnn run's"):
        train(resume=tmp_path)


def test_top5_counts_the_label_among_the_five_highest_logits():
    from edgecnn.compress.train.loop import evaluate
    from edgecnn.data import Split

    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 0], [0, 1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1, 0]])
    labels = torch.tensor([0, 1, 4])  # top-1 right; 6th highest (outside the five); 5th highest (inside)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits[: len(x)]

    split = Split(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), labels)
    _, correct, count, correct5 = evaluate(Fixed(), split, [0.0], [1.0])
    assert (correct, count, correct5) == (1, 3, 2)
    three = torch.tensor([[1.0, 2, 3]]).expand(1, 3)  # fewer than five classes: every label is in the top five

    class Three(torch.nn.Module):
        def forward(self, x):
            return three

    assert evaluate(Three(), Split(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.tensor([0])), [0.0], [1.0])[3] == 1


@pytest.mark.parametrize("total_steps", [1, 2, 4, 5, 10, 500])
def test_the_onecycle_schedule_takes_any_number_of_steps(total_steps):
    """The fast recipe's 20 % warm-up over 5 steps (one epoch of 300 images) was one step: OneCycleLR divided by
    zero. Every short schedule still warms up to the peak and anneals."""
    from edgecnn.compress.train.loop import _scheduler

    recipe = get_recipe("fast")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    scheduler = _scheduler(optimizer, recipe, total_steps)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(total_steps - 1):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert max(rates) <= recipe.lr * (1 + 1e-9) and rates[-1] <= rates[0] and all(r > 0 for r in rates)
