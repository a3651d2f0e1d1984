"""The export stage's options, with their defaults and allowed values written once: the library, the CLI and
`edgecnn pipeline` read them from here. This module imports nothing heavy, so the command line can check a typo
before torch is even loaded."""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgecnn.errors import EdgecnnError

FORMAT_NAMES = ("onnx", "tflite", "ncnn", "executorch")  # one module each beside this one (export/pipeline.py FORMATS)
#: what `edgecnn export` writes unless --formats says otherwise (the measurements behind it: docs/export.md)
DEFAULT_FORMATS = ("onnx", "tflite")
#: export/reparam.py's graph forms, each written as a file of its own
FORMS = ("op-minimal", "mac-preserving", "layout-free", "naive")
#: the ghost-module rewrites (export/reparam.py); op-minimal's per precision are --ghost-fp32 / --ghost-int8
GHOST_REWRITES = ("none", "fold", "fold-dense", "depthwise", "auto")
CALIBRATION_METHODS = ("minmax", "percentile")  # Entropy is not offered: see export/onnx.py
ONNX_SCHEMES = ("u8s8", "s8s8")
TFLITE_LAYOUTS = ("NHWC", "NCHW")
SPLITS = ("test", "val")  # the training split calibrates int8, so it never measures accuracy


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...] = DEFAULT_FORMATS
    int8: bool = False
    fp16: bool = False  # fp16 files beside the fp32 ones, where the format's runtime runs them (docs/export.md)
    calib_samples: int = 1000
    calib_method: str = "minmax"
    onnx_scheme: str = "u8s8"
    split: str = "test"
    threads: int | None = None  # runtime threads while measuring accuracy (None: the runtime's default)
    # the ghost-module rewrite of the op-minimal form, per precision (exact; docs/export.md has the measurements)
    ghost_fp32: str = "auto"
    ghost_int8: str = "depthwise"
    tflite_layout: str = "NHWC"  # TFLite input layout: channel-last saves the converter's input TRANSPOSE/RESHAPE
    ncnn_fallback: bool = True  # int8 ncnn: keep in fp32 each layer whose int8 output alone is wrong (export/ncnn_format.py)
    # each form its own file; a form that is the same graph as an earlier one is not written again (its row names
    # the twin in export.json's forms_alike)
    forms: tuple[str, ...] = ("op-minimal", "mac-preserving", "layout-free")

    def checked(self) -> ExportOptions:
        """These options with every value checked (one line naming the option when one is wrong)."""
        _one_of("--calib-method", self.calib_method, CALIBRATION_METHODS)
        _one_of("--onnx-scheme", self.onnx_scheme, ONNX_SCHEMES)
        _one_of("--ghost-fp32", self.ghost_fp32, GHOST_REWRITES)
        _one_of("--ghost-int8", self.ghost_int8, GHOST_REWRITES)
        _one_of("--tflite-layout", self.tflite_layout, TFLITE_LAYOUTS)
        _one_of("--split", self.split, SPLITS)
        if self.calib_samples < 1:
            raise EdgecnnError("--calib-samples must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise EdgecnnError("--threads must be at least 1")
        return replace(self, formats=parse_list("format", self.formats, FORMAT_NAMES),
                       forms=parse_list("graph form", self.forms, FORMS))


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise EdgecnnError(f"{option} must be one of {', '.join(allowed)}, not {value!r}")


def parse_list(kind: str, values, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list (or sequence) of names, deduplicated in order; an unknown or empty one is a one-line error."""
    items = values.split(",") if isinstance(values, str) else list(values)
    names = tuple(dict.fromkeys(str(n).strip().lower() for n in items if str(n).strip()))
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise EdgecnnError(f"unknown {kind} {', '.join(unknown) or repr(values)}; use a comma list of "
                           f"{', '.join(allowed)}")
    return names


def parse_formats(text) -> tuple[str, ...]:
    return parse_list("format", text, FORMAT_NAMES)
