"""`edgecnn pipeline` resumes where it was interrupted and redoes nothing that is already done."""

import json
import subprocess
import sys

from edgecnn.bench.store import ResultStore


def _calls(folder):
    return json.loads((folder / "calls.json").read_text())


def _status(call, stage):
    return [(status, detail) for model, name, status, detail in call["entries"] if name == stage]


def test_a_training_killed_mid_epoch_is_resumed_not_restarted(pipeline_folder):
    calls = _calls(pipeline_folder)
    assert calls[0] == {"interrupted": True, "export_mtimes": {}}
    run = pipeline_folder / "runs" / "vgg19-exp8-cifar10-pipeline"
    assert calls[1].get("interrupted")  # killed at the bench stage
    assert calls[1]["train_started_after_epoch"] == [1]  # the second call went on from the saved epoch
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == sorted(set(epochs)) and len(epochs) == 3  # epoch 1 was kept, not trained twice
    assert json.loads((run / "result.json").read_text())["status"] == "finished"


def test_a_rerun_skips_finished_stages_and_finishes_the_rest(pipeline_folder):
    calls = _calls(pipeline_folder)
    second, third = calls[1], calls[2]
    assert second["export_mtimes"], "the second call should have exported before it was killed"
    assert third["export_mtimes"] == second["export_mtimes"]  # export.json untouched by the third call
    assert _status(third, "train")[0][0] == "skipped"
    assert _status(third, "export")[0][0] == "skipped"
    assert _status(third, "bundle")[0][0] == "skipped"
    assert _status(third, "bench host") == [("done", "3 measurements")]  # onnx fp32, int8, PyTorch reference
    assert third["errors"] == []
    rows = ResultStore(pipeline_folder / "results" / "bench.sqlite").rows()
    assert sorted(r["format"] + "-" + r["precision"] for r in rows) == ["onnx-fp32", "onnx-int8", "pytorch-fp32"]
    assert (pipeline_folder / "report" / "report.html").is_file()


def test_the_cli_reruns_with_every_stage_skipped(pipeline_folder, tmp_path):
    root = pipeline_folder
    before = ResultStore(root / "results" / "bench.sqlite").rows()
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "edgecnn", "pipeline", "--models", "vgg19-exp8", "--dataset", "cifar10",
         "--formats", "onnx", "--calib-samples", "100", "--threads", "1", "--data-dir", root / "data",
         "--runs-dir", root / "runs",
         "--exports-root", root / "artifacts", "--store", root / "results" / "bench.sqlite", "--out", out, "--no-qat"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("skipped") == 4  # train, export, bundle, bench host
    assert "host: ship " in result.stdout
    assert ResultStore(root / "results" / "bench.sqlite").rows() == before  # nothing measured twice
    assert (out / "report.html").is_file() and (out / "accuracy_vs_latency.png").is_file()


def _copy_of(pipeline_folder, tmp_path):
    import shutil

    for part in ("data", "runs", "artifacts", "results"):
        shutil.copytree(pipeline_folder / part, tmp_path / part, symlinks=True)
    return tmp_path


def test_an_int8_drop_above_the_threshold_triggers_qat_and_its_export(pipeline_folder, tmp_path):
    from edgecnn.pipeline import Hooks, PipelineConfig, int8_drop_pp, run_pipeline

    root = _copy_of(pipeline_folder, tmp_path)
    export = root / "artifacts" / "vgg19-exp8-cifar10-pipeline"
    drop = int8_drop_pp(export)
    assert drop is not None
    from edgecnn.export.options import ExportOptions

    config = dict(models=("vgg19-exp8",), dataset="cifar10", export=ExportOptions(formats=("onnx",), int8=True,
                                                                                     calib_samples=100), threads=(1,),
                  bench_runs=10, bench_warmup=2, data_dir=str(root / "data"), runs_dir=str(root / "runs"),
                  artifacts_dir=str(root / "artifacts"), store=str(root / "results" / "bench.sqlite"),
                  report_dir=str(root / "report"), qat_images_per_epoch=64)
    # below the threshold: nothing is made
    log, *_ = run_pipeline(PipelineConfig(**config, qat_above_pp=drop + 0.01), Hooks())
    assert [s for m, stage, s, d in log.entries if stage == "qat"] == ["skipped"]
    assert not (root / "runs" / "vgg19-exp8-cifar10-pipeline-qat").exists()
    # above it (a threshold under the measured drop): a QAT run with its lineage, exported, bundled and benched
    log, _, _, errors = run_pipeline(PipelineConfig(**config, qat_above_pp=drop - 0.01), Hooks())
    assert errors == []
    qat_run = root / "runs" / "vgg19-exp8-cifar10-pipeline-qat"
    assert json.loads((qat_run / "config.json").read_text())["lineage"]["method"] == "qat"
    qat_export = root / "artifacts" / qat_run.name
    assert int8_drop_pp(qat_export) is not None and (qat_export / "bundle" / "manifest.json").is_file()
    stages = [(stage, status) for m, stage, status, d in log.entries]
    assert ("qat", "done") in stages and stages.count(("export", "done")) == 1  # only the QAT run was exported
    assert len({r["bundle"] for r in ResultStore(root / "results" / "bench.sqlite").rows()}) == 2  # both benched
    # a rerun reuses the finished QAT run and everything after it
    log, *_ = run_pipeline(PipelineConfig(**config, qat_above_pp=drop - 0.01), Hooks())
    assert ("qat", "skipped") in [(stage, status) for m, stage, status, d in log.entries]
    assert all(status == "skipped" for m, stage, status, d in log.entries if stage != "report")


def test_unknown_model_or_device_fails_before_any_work(tmp_path):
    for args, message in ((["--models", "exp99"], "unknown model 'exp99'"),
                          (["--device", "nosuchboard"], "unknown device 'nosuchboard'")):
        result = subprocess.run([sys.executable, "-m", "edgecnn", "pipeline", *args, "--runs-dir", tmp_path / "runs"],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith(f"edgecnn: error: {message}") and "Traceback" not in result.stderr
        assert not (tmp_path / "runs").exists()


def test_a_timm_model_and_a_users_factory_go_through_the_pipeline_into_one_report(tmp_path):
    """Models from outside the zoo take every stage the zoo's do: trained, exported (ONNX fp32 + int8, each file
    scored), bundled, benched and reported beside each other, named as the user named them."""
    (tmp_path / "my_net.py").write_text(
        "from torch import nn\n\n\ndef build(num_classes, in_chans=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))\n")
    from edgecnn.data import write_synthetic_cifar

    write_synthetic_cifar(tmp_path / "data", 10, train_size=300, test_size=100, seed=5)
    result = subprocess.run(
        [sys.executable, "-m", "edgecnn", "pipeline", "--models", "timm:test_resnet,my_net.py:build",
         "--dataset", "cifar10", "--epochs", "1", "--formats", "onnx", "--forms", "op-minimal",
         "--calib-samples", "50", "--threads", "1", "--data-dir", "data", "--runs-dir", "runs",
         "--exports-root", "artifacts", "--store", "bench.sqlite", "--out", "report", "--no-qat"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = ResultStore(tmp_path / "bench.sqlite").rows()
    # the closing per-file table (test accuracy, p50, peak memory) comes before the recommendation
    assert result.stdout.index("peak MiB") < result.stdout.index("report:")
    assert "model.fp32.onnx" in result.stdout and "model.int8.onnx" in result.stdout
    models = {r["model"] for r in rows}
    assert models == {"timm:test_resnet", f"{tmp_path / 'my_net.py'}:build"}, models
    for model in models:
        files = sorted(r["format"] + "-" + r["precision"] for r in rows if r["model"] == model)
        assert files == ["onnx-fp32", "onnx-int8", "pytorch-fp32"], (model, files)
    from edgecnn.export.record import ExportRecord

    exports = [ExportRecord.read(folder.parent) for folder in (tmp_path / "artifacts").glob("*/export.json")]
    assert len(exports) == 2
    for record in exports:
        made = [a for a in record.artifacts if a.file]
        assert len(made) == 2 and all(a.ok and a.accuracy is not None for a in made), made
    page = (tmp_path / "report" / "report.md").read_text()
    assert "timm:test_resnet" in page and "my_net" in page


def test_an_export_recorded_before_an_option_existed_is_still_current(pipeline_folder, tmp_path):
    """export.json written before --fp16 existed has no "fp16" option: its files were made with the default, so
    the pipeline keeps them rather than exporting again; asking for fp16 files does export again."""
    import shutil
    from dataclasses import replace

    from edgecnn.export.options import ExportOptions
    from edgecnn.pipeline import PipelineConfig, _export_is_current

    folder = tmp_path / "export"
    shutil.copytree(pipeline_folder / "artifacts" / "vgg19-exp8-cifar10-pipeline", folder)
    record = json.loads((folder / "export.json").read_text())
    del record["options"]["fp16"]
    (folder / "export.json").write_text(json.dumps(record))
    checkpoint = pipeline_folder / "runs" / "vgg19-exp8-cifar10-pipeline" / "best.pt"
    config = PipelineConfig(export=ExportOptions(formats=("onnx",), int8=True, calib_samples=100))
    assert _export_is_current(folder, checkpoint, config)
    assert not _export_is_current(folder, checkpoint, replace(config, export=replace(config.export, fp16=True)))


def test_export_after_the_pipeline_then_pipeline_then_report_no_stale_row_no_double_bench(pipeline_folder, tmp_path):
    """A user exports again into the pipeline's artifact folder, then runs the pipeline and the report: the export
    is refused without --force; with it the old bundle goes, the pipeline benches the new bundle once (and never
    again), and the report shows only the new bundle's rows, saying how many older ones it left out."""
    from edgecnn.export.options import ExportOptions
    from edgecnn.pipeline import Hooks, PipelineConfig, run_pipeline
    from edgecnn.report import collect

    root = _copy_of(pipeline_folder, tmp_path)
    export = root / "artifacts" / "vgg19-exp8-cifar10-pipeline"
    stamp = (export / "export.json").stat().st_mtime_ns
    command = [sys.executable, "-m", "edgecnn", "export", "--run", root / "runs" / "vgg19-exp8-cifar10-pipeline",
               "--formats", "onnx", "--int8", "--calib-samples", "100", "--out", export, "--data-dir", root / "data"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr
    assert (export / "export.json").stat().st_mtime_ns == stamp  # nothing replaced
    old_bundle = json.loads((export / "bundle" / "manifest.json").read_text())["created"]
    replaced = subprocess.run([*command, "--force"], capture_output=True, text=True, timeout=600)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert json.loads((export / "bundle" / "manifest.json").read_text())["created"] != old_bundle

    store_path = root / "results" / "bench.sqlite"
    config = PipelineConfig(models=("vgg19-exp8",), dataset="cifar10", threads=(1,), bench_runs=10, bench_warmup=2,
                            export=ExportOptions(formats=("onnx",), int8=True, calib_samples=100),
                            data_dir=str(root / "data"), runs_dir=str(root / "runs"),
                            artifacts_dir=str(root / "artifacts"), store=str(store_path),
                            report_dir=str(root / "report"), qat_above_pp=None)
    log, *_ = run_pipeline(config, Hooks())
    stages = {stage: (status, detail) for _, stage, status, detail in log.entries}
    assert stages["export"][0] == "skipped" and stages["bundle"][0] == "skipped"  # the user's export is current
    assert stages["bench host"] == ("done", "3 measurements")  # the new files, measured once
    rows = ResultStore(store_path).rows()
    per_bundle = {}
    for row in rows:
        per_bundle.setdefault(row["bundle"], []).append((row["file"], row["threads"]))
    assert len(per_bundle) == 2 and all(len(v) == len(set(v)) == 3 for v in per_bundle.values())

    data = collect(runs_dir=root / "runs", artifacts_dir=root / "artifacts", store=ResultStore(store_path))
    assert data.sources["superseded_measurements"] == 3
    assert len(data.deployment) == 3 and {r["artifact"] for r in data.deployment} == {export.name}
    assert all(r["test_acc"] is not None and r["bytes"] for r in data.deployment if r["format"] != "pytorch")
    [pick] = data.recommendations
    assert pick["candidates"] == 2  # the new fp32 and int8 files: no stale row counted

    log, *_ = run_pipeline(config, Hooks())  # and once more: nothing benched twice
    assert all(status == "skipped" for _, stage, status, _ in log.entries if stage != "report")
    assert ResultStore(store_path).rows() == rows
