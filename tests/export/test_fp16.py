"""fp16 files: ONNX (onnxconverter-common), TFLite (ai-edge-quantizer float casting) and ncnn (float16 weight
blocks) converted from the fp32 file, each measured through its runtime like every other row (the export measures
every file through the same runner a bundle ships). ExecuTorch's fp16 row is checked with its own export, and a
bundle's runner with its files (tests/export/test_executorch_format.py)."""

import json
import struct
import zipfile

import numpy as np
import onnx
import pytest

from edgecnn.export import ncnn_format
from edgecnn.export.pipeline import ExportOptions, export_checkpoint
from edgecnn.export.runner import open_model
from edgecnn.export.tflite import count_ops

#: fp16 keeps 11 significant bits: logits of a trained net move by a few thousandths, never by a tenth
FP16_LOGIT_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def fp16_export(trained_run, shared):
    run, data_dir = trained_run
    out = shared("export-fp16", lambda folder: export_checkpoint(
        run.checkpoint(), folder, ExportOptions(fp16=True, formats=("onnx", "tflite", "ncnn"), forms=("op-minimal",)),
        data_dir=data_dir))
    return json.loads((out / "export.json").read_text()), out


def test_fp16_rows_compute_what_pytorch_computes_within_tolerance(fp16_export):
    report, out = fp16_export
    table = {row["name"]: row for row in report["artifacts"]}
    assert list(table) == ["pytorch-fp32", "onnx-fp32", "onnx-fp16", "tflite-fp32", "tflite-fp16", "ncnn-fp32",
                           "ncnn-fp16"]
    assert all(row["status"] == "ok" for row in table.values()), [row["error"] for row in table.values()]
    for name in ("onnx-fp16", "tflite-fp16", "ncnn-fp16"):
        row, fp32 = table[name], table[name.replace("fp16", "fp32")]
        assert row["precision"] == "fp16"
        assert 0 < row["logit_max_err"] < FP16_LOGIT_TOLERANCE, row  # rounded (not fp32), but only just
        assert row["agreement"] >= 0.99 and abs(row["accuracy"] - fp32["accuracy"]) <= 0.01
        assert row["accuracy"] <= row["top5"]
        assert row["bytes"] < 0.7 * fp32["bytes"]  # the weights at half width


def test_each_fp16_file_holds_float16_weights(fp16_export):
    _, out = fp16_export
    graph = onnx.load(str(out / "model.fp16.onnx")).graph
    kinds = {init.data_type for init in graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in, float32 out
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert count_ops(out / "model.fp16.tflite").get("DEQUANTIZE", 0) > 0  # fp16 constant -> its consumer
    with zipfile.ZipFile(out / "model.fp16.ncnn") as archive:
        assert json.loads(archive.read(ncnn_format.PRECISION_MEMBER)) == {"precision": "fp16"}
    with zipfile.ZipFile(out / "model.fp32.ncnn") as archive:
        assert ncnn_format.PRECISION_MEMBER not in archive.namelist()
    layers = ncnn_format.parse_param(ncnn_format.read_container(out / "model.fp16.ncnn")[0])
    ncnn_format.split_weights(layers, ncnn_format.read_container(out / "model.fp16.ncnn")[1])
    tags = {struct.unpack_from("<I", layer.weights[0])[0] for layer in layers if layer.type in ncnn_format.QUANTIZABLE}
    assert tags == {ncnn_format.FP16_TAG}


def test_the_ncnn_fp16_block_is_what_ncnn_reads():
    values = np.array([1.0, -2.5, 65504.0], np.float32)
    block = ncnn_format.fp16_block(struct.pack("<I", 0) + values.tobytes())
    assert block[:4] == struct.pack("<I", 0x01306B47) and len(block) == 4 + 8  # 3 halves padded to 4 bytes
    assert np.frombuffer(block[4:10], "<f2").tolist() == [1.0, -2.5, 65504.0]


def test_the_runner_turns_ncnn_fp16_on_only_for_fp16_files(fp16_export):
    _, out = fp16_export
    half, full = open_model(str(out / "model.fp16.ncnn")), open_model(str(out / "model.fp32.ncnn"))
    assert half.net.opt.use_fp16_storage and half.net.opt.use_fp16_arithmetic and not half.net.opt.use_bf16_storage
    assert not (full.net.opt.use_fp16_storage or full.net.opt.use_fp16_arithmetic or full.net.opt.use_bf16_storage)
