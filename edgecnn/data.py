"""Datasets shared by every stage: CIFAR-10/100 and Fashion-MNIST in their real file formats, held in memory.

Every split is a pair of tensors: uint8 images (N, C, 32, 32) and int64 labels. Keeping uint8 in memory and
normalising/augmenting whole batches is several times faster on a small CPU than a PIL image per sample
(benchmarks/train_throughput.py measures both). The training split is divided once, with a fixed seed, into
train and validation (10 %: 45k/5k for CIFAR, 54k/6k for Fashion-MNIST); the test split is never touched until
the final evaluation, and int8 calibration later draws from the train part only.

Where the files come from:
- cifar10 / cifar100: torchvision's dataset classes (checksums verified) under `--data-dir`, downloaded there
  with `--download` when online. A folder written by :func:`write_synthetic_cifar` (marked by
  ``edgecnn-synthetic.json``) is read by the same torchvision code with the checksum step skipped.
- fashion-mnist: Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist/*.gz), a folder holding
  those four files, or torchvision's layout (DIR/FashionMNIST/raw), padded from 28x28 to 32x32 with black.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from edgecnn.errors import EdgecnnError, UnknownNameError
from edgecnn.io import atomic_write_bytes, atomic_write_text, cache_dir

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SYNTHETIC_MARKER = "edgecnn-synthetic.json"
VAL_FRACTION = 0.1
SPLIT_SEED = 0  # one train/val split for every run, so that later stages can rebuild it exactly

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int  # native channels of the images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folder: str  # what --data-dir must contain
    source: str


DATASETS: dict[str, DatasetInfo] = {
    # CIFAR statistics as in the paper's generation-2 code (paper-spec.md section 5)
    "cifar10": DatasetInfo("cifar10", 10, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "cifar100": DatasetInfo("cifar100", 100, 3, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                            "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    # measured on the 60k training images after padding to 32x32
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, (0.2190,), (0.3318,), "FashionMNIST/raw",
                                 "Debian package dataset-fashion-mnist, or torchvision.datasets.FashionMNIST"),
}


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, 32, 32)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """The three splits of a dataset, in memory, with what every later artifact must record about it."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise EdgecnnError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def describe(self) -> dict:
        """What a run, an export or a bundle records about its data."""
        return {"dataset": self.info.name, "num_classes": self.info.num_classes, "classes": list(self.classes),
                "in_chans": self.in_chans, "mean": list(self.mean), "std": list(self.std), "image_size": 32,
                "split_seed": SPLIT_SEED, "sizes": {k: len(self.split(k)) for k in ("train", "val", "test")}}


def dataset_info(name: str) -> DatasetInfo:
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise UnknownNameError("dataset", name, DATASETS)
    return DATASETS[key]


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32, as torchvision's ToTensor + Normalize."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255) - mean_t).div_(std_t)


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = False,
                 in_chans: int | None = None) -> Dataset:
    """Load a dataset's train/val/test splits into memory. Raises EdgecnnError with what to do when it can't."""
    info = dataset_info(name)
    loader = _load_fashion_mnist if info.name == "fashion-mnist" else _load_cifar
    (train_x, train_y), (test_x, test_y), classes = loader(info, Path(data_dir) if data_dir else None, download)
    in_chans = in_chans or info.channels
    if in_chans not in (1, 3) or (in_chans == 1 and info.channels == 3):
        raise EdgecnnError(f"{info.name} has {info.channels}-channel images; --in-chans {in_chans} is not possible")
    mean, std = info.mean, info.std
    if in_chans != info.channels:  # grey replicated to RGB
        train_x, test_x = train_x.expand(-1, 3, -1, -1).contiguous(), test_x.expand(-1, 3, -1, -1).contiguous()
        mean, std = mean * 3, std * 3
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, round(len(order) * VAL_FRACTION))
    train_idx, val_idx = order[:-n_val].sort().values, order[-n_val:].sort().values
    return Dataset(info, Split(train_x[train_idx], train_y[train_idx]), Split(train_x[val_idx], train_y[val_idx]),
                   Split(test_x, test_y), tuple(classes), in_chans, tuple(mean), tuple(std))


# ---------------------------------------------------------------------------------------------------- CIFAR

def _cifar_class(info: DatasetInfo, verify_checksums: bool):
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if info.name == "cifar10" else CIFAR100
    if verify_checksums:
        return base

    class Unverified(base):  # a synthetic folder: same reader, no md5 (its files are ours, not Toronto's)
        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file() for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as handle:
                self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return Unverified


def _load_cifar(info: DatasetInfo, data_dir: Path | None, download: bool):
    root = data_dir or cache_dir() / "datasets"
    folder = root / info.folder
    synthetic = (folder / SYNTHETIC_MARKER).is_file()
    where = f"put the extracted python version there ({folder}/...), or pass --download when online"
    if not folder.is_dir() and not download:
        raise EdgecnnError(f"{info.name} not found in {root}: {where}")
    cls = _cifar_class(info, verify_checksums=not synthetic)
    try:
        train = cls(str(root), train=True, download=download and not synthetic)
        test = cls(str(root), train=False)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise EdgecnnError(f"{info.name} in {folder} is incomplete or corrupt (checksum mismatch): {where}") from error
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
        raise EdgecnnError(f"{info.name} in {folder} is not in CIFAR's python format: {error}") from error
    except OSError as error:  # URLError is an OSError
        raise EdgecnnError(f"could not download {info.name} ({error}); {where}") from error

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(ds.targets, dtype=torch.int64)
        if labels.numel() and (labels.min() < 0 or labels.max() >= info.num_classes):
            raise EdgecnnError(f"{info.name} in {folder} has labels outside 0..{info.num_classes - 1}")
        return images, labels

    return tensors(train), tensors(test), list(train.classes)


# ---------------------------------------------------------------------------------------------- Fashion-MNIST

def _fashion_root(data_dir: Path | None, download: bool) -> Path:
    """A root in torchvision's FashionMNIST layout, extracting Debian-style .gz files into the cache if needed."""
    if data_dir and (data_dir / "FashionMNIST" / "raw").is_dir():
        return data_dir
    source = data_dir or DEBIAN_FASHION_MNIST
    found = {name: next((p for p in (source / name, source / f"{name}.gz") if p.is_file()), None)
             for name in FASHION_FILES}
    if all(found.values()):
        root = cache_dir() / "datasets" / "fashion-mnist"
        raw = root / "FashionMNIST" / "raw"
        for name, path in found.items():
            target = raw / name
            if not target.is_file() or target.stat().st_mtime < path.stat().st_mtime:
                data = path.read_bytes()
                try:
                    atomic_write_bytes(target, gzip.decompress(data) if path.suffix == ".gz" else data)
                except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
                    raise EdgecnnError(f"cannot read {path}: {error}") from error
        return root
    if download:
        return data_dir or cache_dir() / "datasets"
    if data_dir:
        missing = ", ".join(n for n, p in found.items() if p is None)
        raise EdgecnnError(f"fashion-mnist not found in {data_dir}: expected {missing} (optionally .gz), or "
                           "torchvision's layout DIR/FashionMNIST/raw")
    raise EdgecnnError("fashion-mnist not found: install Debian's dataset-fashion-mnist "
                       f"(files in {DEBIAN_FASHION_MNIST}), pass --data-dir, or --download when online")


def _load_fashion_mnist(info: DatasetInfo, data_dir: Path | None, download: bool):
    from torchvision.datasets import FashionMNIST

    root = _fashion_root(data_dir, download)
    try:
        train = FashionMNIST(str(root), train=True, download=download)
        test = FashionMNIST(str(root), train=False)
    except (AssertionError, RuntimeError, ValueError, IndexError) as error:
        raise EdgecnnError(f"fashion-mnist files in {root} are corrupt or not in IDX format") from error
    except OSError as error:
        raise EdgecnnError(f"could not download fashion-mnist ({error})") from error

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        if ds.data.ndim != 3 or ds.data.shape[1:] != (28, 28) or len(ds.data) != len(ds.targets):
            raise EdgecnnError(f"fashion-mnist files in {root} do not hold 28x28 images with one label each")
        padded = torch.nn.functional.pad(ds.data, (2, 2, 2, 2))  # 28x28 -> 32x32, black border
        return padded.unsqueeze(1).contiguous(), ds.targets.to(torch.int64)

    return tensors(train), tensors(test), list(FASHION_CLASSES)


# ------------------------------------------------------------------------------------------ synthetic CIFAR

class _Py2Str(bytes):
    """A byte string pickled as Python 2's `str` (SHORT_BINSTRING), as in the real CIFAR files: it loads as
    bytes with encoding='bytes' (the usual CIFAR snippet) and as str with encoding='latin1' (torchvision)."""


class _CifarPickler(pickle._Pickler):  # the pure-Python pickler is the one whose dispatch table can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2str(self, obj: _Py2Str) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + bytes(obj))
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2str


def _py2(value):
    if isinstance(value, str):
        return _Py2Str(value.encode("latin1"))
    if isinstance(value, dict):
        return {_py2(k): _py2(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_py2(v) for v in value]
    return value


def _dump_py2(path: Path, obj: dict) -> None:
    import io

    buffer = io.BytesIO()
    _CifarPickler(buffer, protocol=2).dump(_py2(obj))
    atomic_write_bytes(path, buffer.getvalue())


def synthetic_images(num_classes: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable 32x32 RGB images: class -> (hue, stripe pattern); random phase, contrast and noise.

    Patterns are horizontal or vertical stripes at five frequencies, so horizontal flips and 4-pixel crops
    (the standard augmentation) keep the class. With 100 classes, hue = class // 10 and pattern = class % 10.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % num_classes
    labels = labels[torch.randperm(count, generator=g)]
    hue_idx = labels // 10 if num_classes > 10 else labels
    pattern = labels % 10
    hue = hue_idx.float() / 10 * 2 * math.pi
    colour = torch.stack([torch.cos(hue + k * 2 * math.pi / 3) for k in range(3)], 1) * 0.35 + 0.5  # (N, 3)
    freq = (pattern % 5 + 1).float() * math.pi / 8
    coord = torch.arange(32).float()
    phase = torch.rand(count, generator=g) * 2 * math.pi
    along = torch.where((pattern < 5)[:, None, None], coord.view(1, 32, 1).expand(count, 32, 32),
                        coord.view(1, 1, 32).expand(count, 32, 32))
    stripes = torch.sin(along * freq[:, None, None] + phase[:, None, None])  # (N, 32, 32)
    contrast = 0.15 + 0.15 * torch.rand(count, 1, 1, 1, generator=g)
    noise = 0.08 * torch.randn(count, 3, 32, 32, generator=g)
    images = colour[:, :, None, None] + contrast * stripes[:, None] + noise
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def write_synthetic_cifar(out_dir: str | os.PathLike[str], num_classes: int = 10, train_size: int = 5000,
                          test_size: int = 1000, seed: int = 0) -> Path:
    """Write a small learnable dataset in CIFAR-10's (5 train batches + test_batch + batches.meta) or CIFAR-100's
    (train, test, meta with fine/coarse labels) python pickle format, under `out_dir`. Returns the folder."""
    if num_classes not in (10, 100):
        raise EdgecnnError("synthetic CIFAR has 10 or 100 classes")
    info = DATASETS["cifar10" if num_classes == 10 else "cifar100"]
    folder = Path(out_dir) / info.folder
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_images(num_classes, train_size, seed)
    test_x, test_y = synthetic_images(num_classes, test_size, seed + 1)
    names = [f"pattern{c:02d}" for c in range(num_classes)]

    def batch(label: str, x: torch.Tensor, y: torch.Tensor) -> dict:
        entry = {"batch_label": label, "data": x.reshape(len(x), -1).numpy(),
                 "filenames": [f"synthetic_{label.split()[-1]}_{i}.png" for i in range(len(x))]}
        if num_classes == 10:
            entry["labels"] = y.tolist()
        else:
            entry["fine_labels"], entry["coarse_labels"] = y.tolist(), (y // 5).tolist()
        return entry

    if num_classes == 10:
        for i, chunk in enumerate(torch.arange(train_size).chunk(5), start=1):
            _dump_py2(folder / f"data_batch_{i}", batch(f"training batch {i} of 5", train_x[chunk], train_y[chunk]))
        _dump_py2(folder / "test_batch", batch("testing batch 1 of 1", test_x, test_y))
        _dump_py2(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": train_size // 5,
                                            "num_vis": 3072})
    else:
        _dump_py2(folder / "train", batch("training batch 1 of 1", train_x, train_y))
        _dump_py2(folder / "test", batch("testing batch 1 of 1", test_x, test_y))
        _dump_py2(folder / "meta", {"fine_label_names": names,
                                    "coarse_label_names": [f"group{c:02d}" for c in range(20)]})
    atomic_write_text(folder / SYNTHETIC_MARKER, json.dumps(
        {"generator": "edgecnn.data.write_synthetic_cifar", "num_classes": num_classes, "train_size": train_size,
         "test_size": test_size, "seed": seed}, indent=2))
    return folder
