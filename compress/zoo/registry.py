"""Model registry: a dict of entries, `register`, `list_models` (natural sort, wildcards), `get_model`, `resolve`."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from edgecnn.errors import EdgecnnError, UnknownNameError

from .external import TIMM, build_external, describe_external, is_external, resolve_external, slug

from .builder import build_resnet, build_vgg
from .spec import ResNetSpec, VGGSpec

Builder = Callable[[int, int], nn.Module]  # (num_classes, in_chans) -> model


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    build: Builder
    techniques: tuple[str, ...]
    summary: str
    quirks: tuple[str, ...] = ()
    spec: ResNetSpec | VGGSpec | None = field(default=None, repr=False)


_REGISTRY: dict[str, ModelEntry] = {}
#: short names: "exp13" means the paper's headline ResNet-101 line, "resnet101-exp13"
_ALIASES: dict[str, str] = {}


def register(name: str, spec: ResNetSpec | VGGSpec | Builder, *, family: str, techniques: tuple[str, ...],
             summary: str, quirks: tuple[str, ...] = (), alias: str | None = None) -> ModelEntry:
    if name in _REGISTRY or name in _ALIASES:
        raise ValueError(f"model {name!r} registered twice")
    if isinstance(spec, ResNetSpec):
        build: Builder = lambda nc, ch, s=spec: build_resnet(s, nc, ch)  # noqa: E731
    elif isinstance(spec, VGGSpec):
        build = lambda nc, ch, s=spec: build_vgg(s, nc, ch)  # noqa: E731
    else:
        build = spec
    entry = ModelEntry(name, family, build, techniques, summary, quirks,
                       spec if isinstance(spec, (ResNetSpec, VGGSpec)) else None)
    _REGISTRY[name] = entry
    if alias:
        _ALIASES[alias] = name
    return entry


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, in natural order (exp2 before exp10)."""
    return sorted((n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)), key=_natural_key)


def resolve(name: str) -> str:
    """Canonical name for `name` (case-insensitive, "_" == "-", short "expN" aliases; `timm:NAME` and a user's
    `module:factory` / `file.py:factory` as compress/zoo/external.py spells them); raises UnknownNameError."""
    if is_external(name):
        return resolve_external(name)
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownNameError("model", name, list(_REGISTRY) + list(_ALIASES), "see 'edgecnn models'")
    return key


def get_entry(name: str) -> ModelEntry:
    name = resolve(name)
    if is_external(name):
        family = "timm" if name.startswith(TIMM) else "user"
        return ModelEntry(name, family, lambda nc, ch: build_external(name, nc, ch), (),
                          "timm architecture, small-input stem" if family == "timm" else "a user's factory")
    return _REGISTRY[name]


def is_zoo(name: str) -> bool:
    """Whether `name` is one of edgecnn's own entries (their zoo-specific export rewrites apply)."""
    return not is_external(name)


def model_slug(name: str) -> str:
    """`name` as part of a folder name (runs are called <slug>-<dataset>-...)."""
    name = resolve(name)
    return slug(name) if is_external(name) else name


def model_source(name: str, num_classes: int, in_chans: int) -> dict:
    """Where a model comes from, as a run records it: the zoo, or an external model's origin and arguments."""
    name = resolve(name)
    return describe_external(name, num_classes, in_chans) if is_external(name) else {"kind": "zoo"}


def get_model(name: str, num_classes: int = 10, in_chans: int = 3, pretrained: str | None = None) -> nn.Module:
    """Build a fresh model by name, randomly initialised (a timm model: from a local `pretrained` weights file)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    name = resolve(name)
    if is_external(name):
        return build_external(name, num_classes, in_chans, pretrained)
    if pretrained:
        raise EdgecnnError("--pretrained is for timm models (timm:NAME); zoo models start from random weights")
    return get_entry(name).build(num_classes, in_chans)
