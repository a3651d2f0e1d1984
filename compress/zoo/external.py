"""Models from outside the zoo, under the same names every stage takes: ``timm:NAME`` (timm's registry) and a user's
factory, ``package.module:function`` or ``path/to/file.py:function``.

A name is the model's identity, as a zoo name is: runs, checkpoints and exports record it, and every later stage
rebuilds the model from it (then loads the checkpoint's weights). A file path is recorded absolute, so a later
stage finds the same file from any working folder. The factory is called with the keywords its signature takes of
``num_classes`` and ``in_chans``; what it was called with is recorded beside the name (`describe_external`).

timm's architectures are written for 224x224 images. On edgecnn's 32x32 inputs the stem's stride (and a ResNet's
max pool after it) would leave a 1x1 map after two stages, so the stem gets stride 1 and a max pool right after
the stem goes: the change CIFAR ResNets make (the zoo's ResNet-101 stem is a stride-1 3x3 conv), and no
weights change shape, so a pretrained file still loads.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch
from torch import nn

from edgecnn.errors import EdgecnnError, UnknownNameError, describe_error

TIMM = "timm:"


def is_external(name: str) -> bool:
    return ":" in name


def resolve_external(name: str) -> str:
    """The canonical name: ``timm:NAME`` as timm spells it, a factory file's path made absolute; raises
    UnknownNameError (with timm's nearest names) or a one-line EdgecnnError."""
    name = name.strip()
    if name.lower().startswith(TIMM):
        arch = name[len(TIMM):].strip()
        timm = _timm()
        if not timm.is_model(arch):
            raise UnknownNameError("timm model", arch, timm.list_models(), "see timm.list_models()")
        return TIMM + arch
    target, _, attr = name.rpartition(":")
    if not target or not attr:
        raise EdgecnnError(f"model {name!r}: a factory is named module.path:function or file.py:function")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise EdgecnnError(f"model {name!r}: no such file {target}")
        return f"{path.resolve()}:{attr}"
    return f"{target}:{attr}"


def slug(name: str) -> str:
    """A folder-name form of a model name (run names): timm-resnet18, my_net-build, pkg.nets-small."""
    if name.startswith(TIMM):
        text = "timm-" + name[len(TIMM):]
    else:
        target, _, attr = name.rpartition(":")
        text = f"{Path(target).stem if target.endswith('.py') else target}-{attr}"
    return "".join(c if c.isalnum() or c in "._+=-" else "-" for c in text)


def _timm():
    try:
        import timm
    except ImportError:
        raise EdgecnnError("timm models need timm: pip install timm") from None
    return timm


def load_factory(name: str):
    """The callable a factory name points at, imported from the user's environment (or the named file)."""
    target, _, attr = name.rpartition(":")
    try:
        if target.endswith(".py"):
            module_name = "edgecnn_user_" + hashlib.sha256(target.encode()).hexdigest()[:12]
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, target)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module  # before exec: dataclasses and pickling look themselves up
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            module = importlib.import_module(target)
    except Exception as error:  # noqa: BLE001 - the user's code: whatever it raises is one line
        raise EdgecnnError(f"model {name!r}: importing {target} failed: {describe_error(error, 200)}") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise EdgecnnError(f"model {name!r}: {target} has no {attr!r}")
    if not callable(factory):
        raise EdgecnnError(f"model {name!r}: {attr} is a {type(factory).__name__}, not a function or class")
    return factory


def factory_kwargs(factory, num_classes: int, in_chans: int) -> dict:
    """The keywords of num_classes / in_chans the factory's signature accepts (all of them for **kwargs)."""
    offered = {"num_classes": num_classes, "in_chans": in_chans}
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return offered
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in offered.items() if k in names}


def build_external(name: str, num_classes: int, in_chans: int, pretrained: str | None = None) -> nn.Module:
    """A fresh model for a canonical external name, checked to be a classifier of `num_classes` on 32x32 images."""
    if name.startswith(TIMM):
        model = _build_timm(name[len(TIMM):], num_classes, in_chans, pretrained)
    else:
        if pretrained:
            raise EdgecnnError("--pretrained is for timm models; a factory loads its own weights")
        factory = load_factory(name)
        try:
            model = factory(**factory_kwargs(factory, num_classes, in_chans))
        except Exception as error:  # noqa: BLE001 - the user's code
            raise EdgecnnError(f"model {name!r}: the factory raised {describe_error(error, 200)}") from None
        if not isinstance(model, nn.Module):
            raise EdgecnnError(f"model {name!r}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    check_classifier(model, name, num_classes, in_chans)
    return model


def _build_timm(arch: str, num_classes: int, in_chans: int, pretrained: str | None) -> nn.Module:
    timm = _timm()
    kwargs = {"num_classes": num_classes, "in_chans": in_chans}
    if pretrained:  # timm's own loading path, from a local file: it drops a classifier of another class count
        if not Path(pretrained).is_file():  # and sums an RGB stem for in_chans=1
            raise EdgecnnError(f"--pretrained {pretrained}: no such file")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(Path(pretrained).resolve())})
    try:
        model = timm.create_model(arch, **kwargs)
    except Exception as error:  # noqa: BLE001 - a bad weights file, an architecture that refuses the arguments
        raise EdgecnnError(f"timm:{arch}: {describe_error(error, 200)}") from None
    adapt_to_small_inputs(model)
    return model


def adapt_to_small_inputs(model: nn.Module) -> None:
    """Stride 1 in the stem (module doc), in place. The stem is the top-level module that holds timm's
    `first_conv`: every strided conv in it (a multi-branch stem such as MobileOne's strides in each branch), and a
    block's own `stride` attribute (the one its deploy-time rewrite builds its fused conv with), become stride 1."""
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    first = first[0] if isinstance(first, (list, tuple)) else first
    stem = _submodule(model, first.split(".")[0]) if first else None
    if stem is None:
        stem = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    for module in (stem.modules() if stem is not None else ()):
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)
        elif not isinstance(module, nn.Conv2d) and getattr(module, "stride", 1) not in (1, (1, 1)) \
                and isinstance(module.stride, (int, tuple)):
            module.stride = 1 if isinstance(module.stride, int) else (1, 1)
    if isinstance(getattr(model, "maxpool", None), nn.MaxPool2d):  # timm's ResNet family
        model.maxpool = nn.Identity()


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


@torch.no_grad()
def check_classifier(model: nn.Module, name: str, num_classes: int, in_chans: int) -> None:
    """One forward pass in eval mode on a (2, C, 32, 32) batch: logits of shape (2, num_classes), or one line."""
    was_training = model.training
    model.eval()
    try:
        output = model(torch.zeros(2, in_chans, 32, 32))
    except Exception as error:  # noqa: BLE001 - the user's model
        raise EdgecnnError(f"model {name!r} cannot run a (2, {in_chans}, 32, 32) image batch: "
                           f"{describe_error(error, 200)}") from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (2, num_classes):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise EdgecnnError(f"model {name!r} gives {shape} for a (2, {in_chans}, 32, 32) batch; a classifier of "
                           f"{num_classes} classes gives (2, {num_classes}) logits")


def describe_external(name: str, num_classes: int, in_chans: int) -> dict:
    """What a run records of an external model's origin: the library version or the factory, its arguments, and a
    factory file's sha256 (so a later change to the file can be seen)."""
    if name.startswith(TIMM):
        return {"kind": "timm", "architecture": name[len(TIMM):], "timm": _timm().__version__,
                "kwargs": {"num_classes": num_classes, "in_chans": in_chans}, "small_input_stem": True}
    target = name.rpartition(":")[0]
    factory = load_factory(name)
    source = {"kind": "factory", "factory": name, "kwargs": factory_kwargs(factory, num_classes, in_chans)}
    if target.endswith(".py"):
        source["file_sha256"] = hashlib.sha256(Path(target).read_bytes()).hexdigest()
    return source
