"""Model cards: what `edgecnn models` shows. Measuring all 31 models takes ~20 s on a laptop CPU (ResNet-101
variants dominate), so measurements are cached, keyed by the zoo's own source code and the torch/fvcore versions:
editing a block or a variant invalidates the cache by itself."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch

from edgecnn.io import atomic_write_text, cache_dir

from .measure import count_mflops, count_params, state_dict_mib
from .paper import Published, published
from .registry import get_entry, is_zoo, resolve


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str
    num_classes: int
    in_chans: int
    params: int
    mflops: float
    size_mib: float
    techniques: tuple[str, ...]
    summary: str
    quirks: tuple[str, ...]
    paper: Published | None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["techniques"], data["quirks"] = list(self.techniques), list(self.quirks)
        return data


def _zoo_fingerprint() -> str:
    digest = hashlib.sha256(f"{torch.__version__}|{metadata.version('fvcore')}".encode())
    root = Path(__file__).resolve().parent.parent
    for source in sorted(root.glob("layers/*.py")) + sorted(root.glob("zoo/*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


class _MeasureCache:
    def __init__(self) -> None:
        self.path = cache_dir() / f"zoo-measurements-{_zoo_fingerprint()}.json"
        try:
            self.data: dict[str, list[float]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def get(self, name: str, num_classes: int, in_chans: int) -> tuple[int, float, float]:
        key = f"{name}/{num_classes}/{in_chans}"
        if not is_zoo(name):  # timm's version or the user's file may change under the same name: measure each time
            model = get_entry(name).build(num_classes, in_chans)
            return count_params(model), count_mflops(model, in_chans), state_dict_mib(model)
        if key not in self.data:
            model = get_entry(name).build(num_classes, in_chans)
            self.data[key] = [count_params(model), count_mflops(model, in_chans), state_dict_mib(model)]
            self.dirty = True
        params, mflops, size = self.data[key]
        return int(params), mflops, size

    def save(self) -> None:
        if self.dirty:
            try:
                atomic_write_text(self.path, json.dumps(self.data, sort_keys=True))
                for stale in self.path.parent.glob("zoo-measurements-*.json"):
                    if stale != self.path:
                        stale.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only cache directory is no reason to fail a listing


def model_cards(names: list[str], num_classes: int = 10, in_chans: int = 3, progress=None) -> list[ModelCard]:
    """Measure (or read from cache) each model; `progress(name)` is called before each one."""
    cache = _MeasureCache()
    cards = []
    try:
        for name in names:
            name = resolve(name)
            if progress:
                progress(name)
            entry = get_entry(name)
            params, mflops, size = cache.get(name, num_classes, in_chans)
            paper = published(name, num_classes) if in_chans == 3 else None
            cards.append(ModelCard(name, entry.family, num_classes, in_chans, params, mflops, size, entry.techniques,
                                   entry.summary, entry.quirks, paper))
    finally:
        cache.save()
    return cards
