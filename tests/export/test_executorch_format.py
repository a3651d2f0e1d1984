"""ExecuTorch through the whole export: rows measured through its own runtime, a bundle whose runner runs the
`.pte` files, and the requirement torch that its runtime brings. One graph form only: its lowering takes minutes."""

import json
import subprocess
import sys

import pytest

from edgecnn.export import executorch_format
from edgecnn.export.bundle import make_bundle
from edgecnn.export.pipeline import ExportOptions, export_checkpoint


@pytest.fixture(scope="module")
def executorch_export(trained_run, shared):
    run, data_dir = trained_run
    out = shared("export-executorch", lambda folder: export_checkpoint(
        run.checkpoint(), folder, ExportOptions(int8=True, fp16=True, calib_samples=100, formats=("executorch",),
                                                forms=("op-minimal",)), data_dir=data_dir))
    return json.loads((out / "export.json").read_text()), out


def test_executorch_rows_are_measured_through_its_runtime(executorch_export):
    report, out = executorch_export
    table = {row["name"]: row for row in report["artifacts"]}
    assert list(table) == ["pytorch-fp32", "executorch-fp32", "executorch-int8", "executorch-fp16"]
    assert all(row["status"] == "ok" for row in table.values()), [row["error"] for row in table.values()]
    assert table["executorch-fp32"]["logit_max_err"] < 1e-4 and table["executorch-fp32"]["agreement"] == 1.0
    assert table["executorch-int8"]["agreement"] >= 0.85
    assert table["executorch-int8"]["bytes"] < table["executorch-fp32"]["bytes"]
    assert table["executorch-int8"]["ops"] == 1  # one delegate call: everything runs in XNNPACK
    assert (out / "model.int8.pte").is_file()
    half = table["executorch-fp16"]  # XNNPACK in fp16 between float32 casts: close to fp32, not equal
    assert 0 < half["logit_max_err"] < 0.05 and half["agreement"] >= 0.99 and half["ops"] == 3
    assert executorch_format.precision(out / "model.fp16.pte") == "fp16"


def test_a_bundle_of_pte_files_runs_and_names_torch(executorch_export, trained_run, tmp_path):
    report, out = executorch_export
    bundle = make_bundle(out, tmp_path / "b", data_dir=trained_run[1], archive=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {a["file"]: a["requires"] for a in manifest["artifacts"]} == {
        "model.fp32.pte": ["executorch>=1.5", "torch"], "model.int8.pte": ["executorch>=1.5", "torch"],
        "model.fp16.pte": ["executorch>=1.5", "torch"]}
    assert "executorch>=1.5\ntorch\n" in (bundle / "requirements.txt").read_text()
    done = subprocess.run([sys.executable, "runner.py", "eval", "--json"], cwd=bundle, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr  # its C++ log stays off stderr
    measured = {r["file"]: r["accuracy"] for r in json.loads(done.stdout)["results"]}
    assert measured == pytest.approx({a["file"]: a["accuracy"] for a in report["artifacts"] if a["file"]}, abs=1e-12)
