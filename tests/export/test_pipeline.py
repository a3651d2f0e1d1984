"""Export of a trained run: every file, its accuracy through its runtime, export.json, int8 that agrees with fp32,
calibration from the training split only, failures as rows."""

import json

import numpy as np
import onnx
import pytest

from edgecnn.data import load_dataset
from edgecnn.errors import EdgecnnError
from edgecnn.export import pipeline
from edgecnn.export.options import parse_formats
from edgecnn.export.pipeline import ExportOptions, calibration_images, export_checkpoint
from edgecnn.export.runner import open_model, preprocess
from edgecnn.export.tflite import count_ops
from edgecnn.io import sha256_file


def rows(report):
    return {row["name"]: row for row in report["artifacts"]}


def test_every_artifact_is_written_and_measured(exported):
    report, out, run = exported
    table = rows(report)
    assert list(table) == ["pytorch-fp32", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8", "ncnn-fp32",
                           "ncnn-int8"]
    assert all(row["status"] == "ok" for row in table.values()), [r["error"] for r in table.values()]
    assert report["images"] == 200 and report["split"] == "test"
    # PyTorch's accuracy here is the one training measured on the same test split
    assert table["pytorch-fp32"]["accuracy"] == pytest.approx(run.result["test_acc"], abs=1e-9)
    assert json.loads((out / "export.json").read_text()) == json.loads(json.dumps(report))
    assert table["pytorch-fp32"]["top5"] == pytest.approx(run.result["test_top5"], abs=1e-9)
    for name, row in table.items():
        assert row["accuracy"] <= row["top5"] <= 1  # top-5 beside top-1 for every file
        if name == "pytorch-fp32":
            continue
        assert (out / row["file"]).stat().st_size == row["bytes"]
        assert sha256_file(out / row["file"]) == row["sha256"]


def test_fp32_files_compute_what_pytorch_computes(exported):
    table = rows(exported[0])
    for name in ("onnx-fp32", "tflite-fp32", "ncnn-fp32"):
        assert table[name]["agreement"] == 1.0
        assert table[name]["logit_max_err"] < 1e-4
        assert table[name]["accuracy"] == table["pytorch-fp32"]["accuracy"]


def test_int8_files_agree_with_fp32(exported):
    table = rows(exported[0])
    for name in ("onnx-int8", "tflite-int8", "ncnn-int8"):
        assert table[name]["agreement"] >= 0.95, table[name]
        assert abs(table[name]["accuracy"] - table["pytorch-fp32"]["accuracy"]) <= 0.03
        # only smaller, not 4x: in a 150k-parameter, 500-op graph the op and tensor records outweigh the weights
        assert table[name]["bytes"] < table[name.replace("int8", "fp32")]["bytes"]


def test_int8_graphs_are_quantized_as_configured(exported):
    report, out, _ = exported
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("DequantizeLinear") > 0 and ops.count("QuantizeLinear") > 0
    zero_points = {init.name: init for init in graph.initializer}
    activation_zps = [zero_points[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert {zp.data_type for zp in activation_zps} == {onnx.TensorProto.UINT8}  # u8s8: uint8 activations
    meta = {p.key: p.value for p in onnx.load(str(out / "model.int8.onnx")).metadata_props}
    assert json.loads(meta["quantization"])["calibration_images"] == 200
    tflite = open_model(str(out / "model.int8.tflite"))
    assert tflite.input["dtype"] == np.int8 and tflite.output["dtype"] == np.int8
    assert count_ops(out / "model.int8.tflite").get("CONV_2D", 0) > 0


def _ops_reading_the_input(path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    index = interpreter.get_input_details()[0]["index"]
    return [op["op_name"] for op in interpreter._get_ops_details() if index in list(op["inputs"])]


def test_tflite_files_take_channel_last_input(exported):
    """TFLite files are NHWC by default: they start with their first conv, not the converter's TRANSPOSE from
    NCHW; export.json says so per file, the runner reads it off the file, accuracy is unchanged (tests above)."""
    report, out, _ = exported
    for name in ("tflite-fp32", "tflite-int8"):
        row = rows(report)[name]
        assert row["details"]["layout"] == "NHWC"
        model = open_model(str(out / row["file"]))
        assert model.layout == "NHWC" and [int(d) for d in model.input["shape"]] == [1, 32, 32, 3]
        consumers = _ops_reading_the_input(out / row["file"])
        assert consumers and not {"TRANSPOSE", "RESHAPE"} & set(consumers), consumers
    assert rows(report)["onnx-fp32"]["details"].get("layout", "NCHW") == "NCHW"


def test_onnx_carries_what_a_deployment_needs(exported):
    report, out, _ = exported
    meta = {p.key: p.value for p in onnx.load(str(out / "model.fp32.onnx")).metadata_props}
    assert meta["model"] == "vgg19-exp8" and meta["dataset"] == "cifar10"
    assert json.loads(meta["classes"]) == report["data"]["classes"]
    assert json.loads(meta["mean"]) == report["data"]["mean"] and json.loads(meta["std"]) == report["data"]["std"]
    assert report["head_activation"] == "relu"  # vgg19-exp8: conv head, ReLU, then GAP
    # no ghost module: both graphs are the model as trained
    assert report["rewrites"]["op-minimal/fp32"] == {"ghost": "auto", "ghost_rewritten": 0, "ghost_kept": 0}
    assert report["rewrites"]["op-minimal/int8"] == {"ghost": "depthwise", "ghost_rewritten": 0, "ghost_kept": 0}
    # every other graph form is the same graph here: named as such, not written again
    assert report["forms_alike"] == {f"{fmt}-{p}-{tag}": f"{fmt}-{p}" for fmt in ("onnx", "tflite", "ncnn")
                                     for p in ("fp32", "int8") for tag in ("macs", "nolayout")}
    assert sorted(a["file"] for a in report["artifacts"] if a["file"]) == [
        "model.fp32.ncnn", "model.fp32.onnx", "model.fp32.tflite", "model.int8.ncnn", "model.int8.onnx",
        "model.int8.tflite"]
    graph = onnx.load(str(out / "model.fp32.onnx")).graph
    assert graph.input[0].name == "input" and graph.output[0].name == "logits"
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic (dynamic) batch


def test_calibration_draws_only_training_images(trained_run):
    run, data_dir = trained_run
    data = load_dataset("cifar10", data_dir)
    calib = calibration_images(data, 50)
    assert calib.shape == (50, 3, 32, 32)
    train = preprocess(data.train.images.numpy(), data.mean, data.std)
    test = preprocess(data.test.images.numpy(), data.mean, data.std)
    flat = lambda a: {row.tobytes() for row in a}  # noqa: E731
    assert flat(calib) <= flat(train) and not flat(calib) & flat(test)
    np.testing.assert_array_equal(calib, calibration_images(data, 50))  # seeded
    assert len(calibration_images(data, 10**6)) == len(data.train)


def test_a_failing_converter_is_a_row_and_the_rest_still_export(trained_run, tmp_path, monkeypatch):
    run, data_dir = trained_run

    def broken(*args):
        raise RuntimeError("converter exploded\nsecond line")

    import dataclasses

    monkeypatch.setitem(pipeline.FORMATS, "tflite", dataclasses.replace(pipeline.FORMATS["tflite"], export_fp32=broken,
                                                                        export_int8=broken))
    report = export_checkpoint(run.checkpoint(), tmp_path, ExportOptions(int8=False), data_dir=data_dir)
    table = rows(report)
    assert table["onnx-fp32"]["status"] == "ok"
    assert table["tflite-fp32"]["status"] == "failed"
    assert table["tflite-fp32"]["error"] == "RuntimeError: converter exploded"
    assert not (tmp_path / "model.fp32.tflite").exists()
    assert rows(json.loads((tmp_path / "export.json").read_text()))["tflite-fp32"]["status"] == "failed"


def test_the_logit_activation_quirk_is_recorded():
    assert pipeline._head_activation("exp13") == "relu6"
    assert pipeline._head_activation("exp6") is None


def test_unknown_format_is_refused():
    with pytest.raises(EdgecnnError, match="unknown format coreml"):
        parse_formats("onnx,coreml")
