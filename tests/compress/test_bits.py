"""Simulated fixed-point quantization (compress/methods/bits.py): the quantizers against hand-computed values, error
that grows as bits shrink on a trained model, and the sweep's record from the CLI with top-5 beside top-1."""

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from edgecnn.compress.methods.bits import (Setting, calibrate_activations, first_loss, quantize_linear, quantize_log,
                                           quantize_weights, simulate, value_range)
from edgecnn.compress.methods.lineage import load_parent
from edgecnn.compress.zoo.measure import micronet_score
from edgecnn.data import normalize


def test_linear_rounds_to_evenly_spaced_levels_and_clips():
    # 2 bits over [0, 1]: levels 0, 1/3, 2/3, 1
    x = torch.tensor([-0.2, 0.1, 0.3, 0.55, 0.9, 1.7])
    expected = torch.tensor([0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0])
    torch.testing.assert_close(quantize_linear(x, 2, 0.0, 1.0), expected)
    # 3 bits over [-1, 1]: step 2/7; 0.2 is 4.2 steps above -1 -> 4 steps -> 1/7
    torch.testing.assert_close(quantize_linear(torch.tensor([0.2]), 3, -1.0, 1.0), torch.tensor([1 / 7]))
    # a constant tensor (lo == hi) stays what it is
    torch.testing.assert_close(quantize_linear(torch.tensor([0.5, 0.5]), 4, 0.5, 0.5), torch.tensor([0.5, 0.5]))


def test_log_quantizes_magnitudes_in_the_log_domain_and_keeps_sign_and_zero():
    # 3 bits: sign + 2 bits for log|x| over [log 1, log 4] -> magnitudes 1, 4^(1/3), 4^(2/3), 4
    lo, hi = 0.0, math.log(4)
    x = torch.tensor([-4.0, 0.0, 1.0, 1.2, 3.0, 9.0])
    expected = torch.tensor([-4.0, 0.0, 1.0, 1.0, 4 ** (2 / 3), 4.0])
    torch.testing.assert_close(quantize_log(x, 3, lo, hi), expected)


def test_ranges_per_tensor_per_channel_and_by_percentile():
    weight = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 5.0, 0.0]])
    assert [float(v) for v in value_range(weight, "linear", "minmax")] == [-1.0, 5.0]
    lo, hi = value_range(weight, "linear", "minmax", dim=0)
    assert lo.flatten().tolist() == [1.0, -1.0] and hi.flatten().tolist() == [3.0, 5.0] and lo.shape == (2, 1)
    lo, hi = value_range(weight, "log", "minmax")  # log-magnitudes of the nonzero values: log 1 .. log 5
    assert float(lo) == 0.0 and float(hi) == pytest.approx(math.log(5))
    spread = torch.cat([torch.linspace(0, 1, 100_000), torch.tensor([1000.0])])  # one outlier
    assert float(value_range(spread, "linear", "percentile")[1]) < 1.01 < float(value_range(spread, "linear", "minmax")[1])


def test_per_channel_weights_take_each_channels_own_range():
    def conv():
        layer = nn.Sequential(nn.Conv2d(1, 2, (1, 3), bias=False))
        with torch.no_grad():
            layer[0].weight.copy_(torch.tensor([[0.0, 0.4, 1.0], [0.0, 40.0, 100.0]]).reshape(2, 1, 1, 3))
        return layer

    per_tensor, per_channel = conv(), conv()
    quantize_weights(per_tensor, 2, "linear", "minmax", "per-tensor")
    quantize_weights(per_channel, 2, "linear", "minmax", "per-channel")
    # per tensor: levels 0, 33.3, 66.7, 100 for both channels; per channel the first has its own 0, 1/3, 2/3, 1
    assert per_tensor[0].weight.flatten().tolist() == pytest.approx([0, 0, 0, 0, 100 / 3, 100])
    assert per_channel[0].weight.flatten().tolist() == pytest.approx([0, 1 / 3, 1, 0, 100 / 3, 100])


def test_error_grows_as_bits_shrink_on_a_trained_model(trained_run):
    run, data_dir = trained_run
    parent = load_parent(run.checkpoint(), data_dir)
    data = parent.data
    x = normalize(data.test.images[:200], data.mean, data.std)
    with torch.no_grad():
        reference = parent.model(x)
    ranges = calibrate_activations(parent.model, [normalize(data.train.images[:256], data.mean, data.std)], "linear",
                                   "minmax")

    def logit_error(net):
        with torch.no_grad():
            return {"error": float((net(x) - reference).abs().mean())}

    for target in ("weights", "activations", "both"):
        errors = [simulate(parent.model, Setting(target, bits), ranges, "linear", "minmax", "per-channel",
                           logit_error)["error"] for bits in (16, 12, 8, 6, 4, 3, 2)]
        assert errors == sorted(errors), (target, errors)
        assert errors[0] < 1e-3 * float(reference.abs().mean()) and errors[-1] > 10 * errors[0], (target, errors)
    with torch.no_grad():
        torch.testing.assert_close(parent.model(x), reference, rtol=0, atol=0)  # the sweep never touches the model


def test_micronet_score_counts_parameters_and_multiplies_at_their_width():
    assert micronet_score(1e6, 10, 32, 32) == pytest.approx(1e6 / 36.5e6 + 2 * 10e6 / 10.49e9)
    assert micronet_score(1e6, 10, 8, 8) == pytest.approx(0.25e6 / 36.5e6 + 1.25 * 10e6 / 10.49e9)
    # 4-bit weights and 16-bit activations: parameters at 4/32, each multiply at the wider operand's 16/32
    assert micronet_score(1e6, 10, 4, 16) == pytest.approx(0.125e6 / 36.5e6 + 1.5 * 10e6 / 10.49e9)


def test_first_loss_names_the_widest_width_below_the_budget():
    rows = [{"target": "none", "bits": 32, "top1": 0.90}] + [
        {"target": "weights", "bits": b, "top1": t} for b, t in ((8, 0.90), (6, 0.895), (4, 0.88), (2, 0.5))] + [
        {"target": "both", "bits": b, "top1": 0.899} for b in (8, 4)]
    assert first_loss(rows, 0.01) == {"weights": 4, "both": None}


def test_the_sweep_from_the_cli_records_top1_and_top5_per_setting(trained_run, tmp_path):
    run, data_dir = trained_run
    result = subprocess.run(
        [sys.executable, "-m", "edgecnn", "compress", "bits", "--run", str(run.path), "--data-dir", data_dir,
         "--bits", "8,3,2", "--targets", "weights,both", "--calib-images", "64", "--runs-dir", str(tmp_path),
         "--name", "sweep"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "more than 1 point lost at: weights" in result.stdout
    rows = json.loads((tmp_path / "sweep" / "bits.json").read_text())
    assert [(r["target"], r["bits"]) for r in rows] == [("none", 32), ("weights", 8), ("weights", 3), ("weights", 2),
                                                       ("both", 8), ("both", 3), ("both", 2)]
    assert all(r["top5"] >= r["top1"] for r in rows) and all(r["images"] == 200 for r in rows)
    assert rows[0]["top1"] == pytest.approx(run.result["test_acc"], abs=1e-9)  # folding BatchNorm is exact
    assert rows[1]["micronet"] < rows[0]["micronet"]
    finished = json.loads((tmp_path / "sweep" / "result.json").read_text())
    config = json.loads((tmp_path / "sweep" / "config.json").read_text())
    assert finished["status"] == "finished" and finished["simulated"] and config["lineage"]["method"] == "bits"
    assert not list((tmp_path / "sweep").glob("*.pt"))  # a simulated setting is not a model file
    export = subprocess.run([sys.executable, "-m", "edgecnn", "export", "--run", str(tmp_path / "sweep")],
                            capture_output=True, text=True, timeout=120)
    assert export.returncode != 0 and export.stderr.strip().splitlines() == [
        f"edgecnn: error: {tmp_path / 'sweep'} is a simulated bit-width sweep (edgecnn compress bits), not a model; "
        f"use its parent run {run.path}"]


@pytest.mark.parametrize("args,message", [
    (["--bits", "8,1"], "--bits takes widths from 2 to 16"),
    (["--bits", "eight"], "--bits wants a comma list of positive integers"),
    (["--targets", "weights,gradients"], "unknown --targets gradients"),
    (["--quantizer", "tanh"], "unknown --quantizer 'tanh'"),
    (["--range", "mean"], "unknown --range 'mean'"),
])
def test_bad_settings_are_one_line_before_any_work(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "edgecnn", "compress", "bits", "--run", str(tmp_path / "none"),
                             *args], capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith(f"edgecnn: error: {message}"), lines
