"""Options shared by several commands (Annotated aliases), so each is spelled and documented once."""

from __future__ import annotations

from typing import Annotated

import typer

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="cifar10, cifar100 or fashion-mnist.")]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Folder holding the dataset files.")]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Use a CIFAR folder whose files are not Toronto's "
                                          "(your own copy) without the checksum step; recorded in the run.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Download the dataset into --data-dir (needs network).")]
InChansOpt = Annotated[int | None, typer.Option("--in-chans", help="1 or 3; grey datasets can be replicated to 3.")]
RunsDirOpt = Annotated[str | None, typer.Option("--runs-dir", help="Where runs live (default ./runs, or $EDGECNN_RUNS_DIR).")]
CheckpointOpt = Annotated[str | None, typer.Option("--checkpoint", help="A checkpoint file (best.pt / last.pt).")]
RunOpt = Annotated[str | None, typer.Option("--run", help="A run directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

# export's options, shared by `edgecnn export` and `edgecnn pipeline`; their defaults come from ExportOptions
FormatsOpt = Annotated[str, typer.Option("--formats", help="Comma list: onnx, tflite, ncnn, executorch (default: onnx,tflite).")]
FormsOpt = Annotated[str, typer.Option("--forms", help="Graph forms, each its own file: op-minimal (fewest operators: "
                                       "what a host pays least for), mac-preserving (fewest multiply-adds: a "
                                       "Raspberry Pi), naive (the model as trained).")]
CalibSamplesOpt = Annotated[int, typer.Option("--calib-samples", min=1, help="Training images for int8 calibration.")]
CalibMethodOpt = Annotated[str, typer.Option("--calib-method", help="minmax or percentile (ONNX).")]
OnnxSchemeOpt = Annotated[str, typer.Option("--onnx-scheme", help="u8s8 (x86 without VNNI) or s8s8 (ARM).")]
GhostFp32Opt = Annotated[str, typer.Option("--ghost-fp32", help="Ghost-module rewrite of the op-minimal fp32 files: "
                                           "auto (depthwise where it absorbs a channel shuffle), depthwise, fold or "
                                           "none (all exact; export/reparam.py).")]
GhostInt8Opt = Annotated[str, typer.Option("--ghost-int8", help="Ghost-module rewrite of the op-minimal int8 files: "
                                           "depthwise (fully integer graphs), auto, fold or none.")]
NcnnFallbackOpt = Annotated[bool, typer.Option("--ncnn-fallback/--no-ncnn-fallback",
                                              help="int8 ncnn: keep in fp32 each layer whose int8 output, checked "
                                              "alone on calibration images, is wrong.")]
TfliteLayoutOpt = Annotated[str, typer.Option("--tflite-layout", help="Input layout of the TFLite files: NHWC "
                                              "(channel-last, no layout op at the input) or NCHW; the runner reads "
                                              "it off the file.")]


def int_list(text: str, option: str = "--threads") -> tuple[int, ...]:
    from edgecnn.errors import EdgecnnError

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise EdgecnnError(f"{option} wants a comma list of positive integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise EdgecnnError(f"{option} wants a comma list of positive integers, not {text!r}")
    return values


def float_list(text: str | None, option: str) -> list[float] | None:
    from edgecnn.errors import EdgecnnError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise EdgecnnError(f"{option} wants a comma list of numbers (one per channel), not {text!r}") from None


# a model file made elsewhere (export/foreign.py): what its file cannot say
MeanOpt = Annotated[str | None, typer.Option("--mean", help="Model files made elsewhere: per-channel mean of x = (uint8 / 255 - mean) / std (default: the --dataset's, else 0).")]
StdOpt = Annotated[str | None, typer.Option("--std", help="Model files made elsewhere: per-channel std (default: the --dataset's, else 1).")]
LayoutOpt = Annotated[str | None, typer.Option("--layout", help="Model files made elsewhere: NCHW or NHWC, where the file's input shape does not tell.")]

# a sweep as Ray tasks (edgecnn/sweep.py): `edgecnn pipeline` and `edgecnn reproduce paper-tables --train`
RayOpt = Annotated[str | None, typer.Option(
    "--ray", help="Run each model's chain as a Ray task: local (a Ray instance on this machine), auto (the cluster "
    "this machine joined) or ray://HOST:10001.")]
CpusPerTaskOpt = Annotated[float, typer.Option("--cpus-per-task", min=0.5, help="Cores per Ray task; its torch "
                                                                                 "threads are set to this share.")]
GpusPerTaskOpt = Annotated[float, typer.Option("--gpus-per-task", min=0, help="GPUs per Ray task.")]
WorkdirOpt = Annotated[str | None, typer.Option("--workdir", help="With --ray: the folder every task runs in and "
                                                "writes runs/ and artifacts/ to (shared storage on a cluster; "
                                                "default: the current folder).")]
