"""Datasets shared by every stage: CIFAR-10/100 and Fashion-MNIST in their real file formats, held in memory.

Every split is a pair of tensors: uint8 images (N, C, 32, 32) and int64 labels. Keeping uint8 in memory and
normalising/augmenting whole batches is several times faster on a small CPU than a PIL image per sample. The
training split is divided once, with a fixed seed, into train and validation (10 %: 45k/5k for CIFAR, 54k/6k for
Fashion-MNIST); the test split is never touched until the final evaluation, and int8 calibration later draws from
the train part only.

Where the files come from, read in place (nothing is unpacked into a cache, so no copy can go stale or be shared
between two sources):
- cifar10 / cifar100: the python version under `--data-dir` (`cifar-10-batches-py/`, `cifar-100-python/`),
  md5-checked against torchvision's tables unless the run says `--no-verify` (a user's own copy) or the folder is
  marked synthetic (:func:`write_synthetic_cifar`). The pickles are read with an unpickler that allows only what
  numpy arrays need. `--download` fetches torchvision's archive into a temporary folder beside the target, which
  replaces the target only once extracted and verified.
- fashion-mnist: Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist/*.gz), a folder holding those
  four files (.gz or not), or torchvision's layout (DIR/FashionMNIST/raw); IDX headers checked, padded from 28x28
  to 32x32 with black.

Every dataset records where it came from and a fingerprint of its contents (`describe()`), which runs, exports and
bundles keep; the later stages load the data a run names and refuse data whose fingerprint differs
(:func:`load_recorded`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgecnn.errors import EdgecnnError, UnknownNameError, describe_error
from edgecnn.io import atomic_write_bytes, atomic_write_text, cache_dir

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SYNTHETIC_MARKER = "edgecnn-synthetic.json"
VAL_FRACTION = 0.1
SPLIT_SEED = 0  # one train/val split for every run, so that later stages can rebuild it exactly

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")
NO_VERIFY_HINT = ("if this is your own copy (re-pickled, a subset, Python-3 pickles), pass --no-verify to use it as "
                  "it is (the run's config records it)")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int  # native channels of the images
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folder: str  # what --data-dir must contain
    source: str
    padded_from: tuple[int, int] | None = None  # native size that loading pads to 32x32 (predict pads it the same)


DATASETS: dict[str, DatasetInfo] = {
    # CIFAR statistics as in the paper's generation-2 code (docs/paper-spec.md section 5)
    "cifar10": DatasetInfo("cifar10", 10, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "cifar100": DatasetInfo("cifar100", 100, 3, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761),
                            "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    # measured on the 60k training images after padding to 32x32
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, (0.2190,), (0.3318,), "FashionMNIST/raw",
                                 "Debian package dataset-fashion-mnist, or torchvision.datasets.FashionMNIST", (28, 28)),
}


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, 32, 32)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Files:
    """What a loader read: the train and test arrays, class names, and where they came from."""

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: list[str]
    source: Path  # what --data-dir names to read the same files again
    checksums: str  # "verified" (md5 against the published files), "not checked", "synthetic", "format only"


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
    source: str = ""
    checksums: str = ""
    fingerprint: str = ""

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise EdgecnnError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def describe(self) -> dict:
        """What a run, an export or a bundle records about its data (load_recorded reads it back)."""
        return {"dataset": self.info.name, "num_classes": self.info.num_classes, "classes": list(self.classes),
                "in_chans": self.in_chans, "mean": list(self.mean), "std": list(self.std), "image_size": 32,
                "split_seed": SPLIT_SEED, "sizes": {k: len(self.split(k)) for k in ("train", "val", "test")},
                "source": self.source, "checksums": self.checksums, "fingerprint": self.fingerprint}


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


def fingerprint(files: Files) -> str:
    """A short hash of every image and label of both files' splits: two sources with one fingerprint hold the same
    data, whatever their paths or compression."""
    digest = hashlib.blake2b(digest_size=12)
    for images, labels in (files.train, files.test):
        digest.update(images.numpy().tobytes())
        digest.update(labels.numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = False,
                 in_chans: int | None = None, verify: bool = True) -> Dataset:
    """Load a dataset's train/val/test splits into memory. Raises EdgecnnError with what to do when it can't.
    `verify` False takes a CIFAR folder whose files are not Toronto's (a user's own copy) without its md5 step."""
    info = dataset_info(name)
    loader = _load_fashion_mnist if info.name == "fashion-mnist" else _load_cifar
    files = loader(info, Path(data_dir).expanduser() if data_dir else None, download, verify)
    in_chans = in_chans or info.channels
    if in_chans not in (1, 3) or (in_chans == 1 and info.channels == 3):
        raise EdgecnnError(f"{info.name} has {info.channels}-channel images; --in-chans {in_chans} is not possible")
    (train_x, train_y), (test_x, test_y) = files.train, files.test
    if len(train_y) < 2 or len(test_y) < 1:
        raise EdgecnnError(f"{info.name} in {files.source} has {len(train_y)} training and {len(test_y)} test "
                           "images; at least 2 and 1 are needed")
    mean, std = info.mean, info.std
    if in_chans != info.channels:  # grey replicated to RGB
        train_x, test_x = train_x.expand(-1, 3, -1, -1).contiguous(), test_x.expand(-1, 3, -1, -1).contiguous()
        mean, std = mean * 3, std * 3
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, round(len(order) * VAL_FRACTION))
    train_idx, val_idx = order[:-n_val].sort().values, order[-n_val:].sort().values
    return Dataset(info, Split(train_x[train_idx], train_y[train_idx]), Split(train_x[val_idx], train_y[val_idx]),
                   Split(test_x, test_y), tuple(files.classes), in_chans, tuple(mean), tuple(std),
                   str(files.source), files.checksums, fingerprint(files))


def load_recorded(described: dict, data_dir: str | os.PathLike[str] | None = None, *, what: str,
                  strict: bool = True) -> Dataset:
    """The dataset a run, an export or a bundle was made with, as its `describe()` record names it: from
    `data_dir` if given, else from the source it recorded (else the dataset's default place). With `strict`, data
    whose fingerprint differs from the record is refused; otherwise the caller may tell the user (eval)."""
    source = described.get("source")
    if data_dir is None and source and Path(source).exists() and Path(source) != DEBIAN_FASHION_MNIST:
        data_dir = source
    verify = described.get("checksums", "verified") != "not checked"
    data = load_dataset(described["dataset"], data_dir, in_chans=described.get("in_chans"), verify=verify)
    if strict and not same_data(described, data):
        raise EdgecnnError(data_mismatch(described, data, what))
    return data


def same_data(described: dict, data: Dataset) -> bool:
    """Whether `data` holds what `described` recorded (its fingerprint; the split sizes for records made before
    fingerprints were kept)."""
    recorded = described.get("fingerprint")
    if recorded:
        return recorded == data.fingerprint
    return not described.get("sizes") or described["sizes"] == data.describe()["sizes"]


def data_mismatch(described: dict, data: Dataset, what: str) -> str:
    sizes = described.get("sizes") or {}
    return (f"{what} was made with {described['dataset']} from {described.get('source') or 'its default place'} "
            f"({sizes.get('train', '?')}/{sizes.get('val', '?')}/{sizes.get('test', '?')} images), but the data found "
            f"in {data.source} differs ({len(data.train)}/{len(data.val)}/{len(data.test)}); pass --data-dir with the "
            "data it was made with")


def _staged_download(root: Path, folder_name: str, fetch) -> None:
    """Download into a temporary folder beside `root/folder_name` and move the result into place only once `fetch`
    (which downloads and verifies into the folder it is given) has finished: a killed download leaves no half
    folder where the loader looks."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{Path(folder_name).parts[0]}.partial-", dir=root))
    try:
        fetch(staging)
        target = root / Path(folder_name).parts[0]
        if target.exists():
            shutil.rmtree(target)
        (staging / Path(folder_name).parts[0]).rename(target)
    except OSError as error:  # URLError is an OSError
        raise EdgecnnError(f"could not download into {root}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- CIFAR

class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's files are pickles; this unpickler builds numpy arrays and plain containers and nothing else, so a
    hostile file cannot run code (pickle.load would call whatever the file names)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a data file never needs")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            entry = _ArrayUnpickler(handle, encoding="latin1").load()
    except OSError as error:
        raise EdgecnnError(f"cannot read {path}: {error.strerror or error}") from error
    except Exception as error:  # noqa: BLE001 - garbage makes the unpickler fail in any of a dozen ways
        raise EdgecnnError(f"{path} is not in CIFAR's python format: {describe_error(error, 160)}") from error
    if not isinstance(entry, dict):
        raise EdgecnnError(f"{path} is not in CIFAR's python format: it holds a {type(entry).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    entry = _unpickle(path)
    if "data" not in entry or label_key not in entry:
        raise EdgecnnError(f"{path} is not in CIFAR's python format: it has no {'data' if 'data' not in entry else label_key!r}")
    try:
        data = np.asarray(entry["data"])
        labels = np.asarray(entry[label_key], dtype=np.int64).reshape(-1)
    except (ValueError, TypeError) as error:
        raise EdgecnnError(f"{path} is not in CIFAR's python format: {error}") from error
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise EdgecnnError(f"{path} does not hold uint8 rows of 3x32x32 pixels with one label each "
                           f"(data {data.dtype} {tuple(data.shape)}, {len(labels)} labels)")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise EdgecnnError(f"{path} has labels outside 0..{num_classes - 1}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _load_cifar(info: DatasetInfo, data_dir: Path | None, download: bool, verify: bool) -> Files:
    from torchvision.datasets import CIFAR10, CIFAR100
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    table = CIFAR10 if info.name == "cifar10" else CIFAR100
    root = data_dir or cache_dir() / "datasets"
    folder = root / info.folder
    where = f"put the extracted python version there ({folder}/...), or pass --download when online"
    synthetic = (folder / SYNTHETIC_MARKER).is_file()
    names = [name for name, _ in table.train_list + table.test_list] + [table.meta["filename"]]
    present = folder.is_dir() and all((folder / name).is_file() for name in names)
    if not present and download:
        _staged_download(root, info.folder, lambda staging: download_and_extract_archive(
            table.url, str(staging), filename=table.filename, md5=table.tgz_md5))
        present = True
    if not folder.is_dir():
        raise EdgecnnError(f"{info.name} not found in {root}: {where}")
    if not present:
        missing = next(name for name in names if not (folder / name).is_file())
        raise EdgecnnError(f"{info.name} in {folder} is incomplete ({missing} is missing): {where}")
    checksums = "synthetic" if synthetic else "verified" if verify else "not checked"
    if checksums == "verified":
        md5 = dict(table.train_list + table.test_list) | {table.meta["filename"]: table.meta["md5"]}
        wrong = next((name for name in names if not check_integrity(str(folder / name), md5[name])), None)
        if wrong:
            raise EdgecnnError(f"{info.name} in {folder} is not Toronto's (checksum mismatch in {wrong}); "
                               f"{NO_VERIFY_HINT}")
    label_key = "labels" if info.name == "cifar10" else "fine_labels"

    def split(entries: list) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_cifar_batch(folder / name, label_key, info.num_classes) for name, _ in entries]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    meta = _unpickle(folder / table.meta["filename"])
    classes = meta.get(table.meta["key"])
    if not isinstance(classes, list) or len(classes) != info.num_classes:
        raise EdgecnnError(f"{folder / table.meta['filename']} does not name {info.num_classes} classes under "
                           f"{table.meta['key']!r}")
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in classes]
    return Files(split(table.train_list), split(table.test_list), classes, root.resolve(), checksums)


# ---------------------------------------------------------------------------------------------- Fashion-MNIST

_IDX_TYPES = {0x08: "unsigned bytes", 0x09: "signed bytes", 0x0B: "16-bit integers", 0x0C: "32-bit integers",
              0x0D: "32-bit floats", 0x0E: "64-bit floats"}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file (.gz or not) of unsigned bytes with `ndim` dimensions, header and size checked; every way it can
    be wrong is a one-line error naming the file."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise EdgecnnError(f"cannot read {path}: {error}") from error
    if len(data) < 4 or data[:2] != b"\0\0":
        raise EdgecnnError(f"{path} is not an IDX file (it does not start with the IDX magic number)")
    kind, dims = data[2], data[3]
    if kind != 0x08:
        raise EdgecnnError(f"{path} is an IDX file of {_IDX_TYPES.get(kind, f'unknown type 0x{kind:02x}')}, not "
                           "unsigned bytes")
    if dims != ndim:
        raise EdgecnnError(f"{path} has {dims} dimensions, not {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise EdgecnnError(f"{path} is truncated (shorter than its header)")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise EdgecnnError(f"{path} is {'truncated' if len(data) < expected else 'too long'}: its header says "
                           f"{'x'.join(map(str, shape))} bytes of data, it holds {len(data) - header}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _fashion_files(data_dir: Path | None) -> tuple[Path, dict[str, Path | None]]:
    """(the --data-dir it is, name -> file or None): the four files in torchvision's layout, else in the folder."""
    source = data_dir or DEBIAN_FASHION_MNIST
    folder = data_dir / "FashionMNIST" / "raw" if data_dir and (data_dir / "FashionMNIST" / "raw").is_dir() else source
    return source, {name: next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
                    for name in FASHION_FILES}


def _load_fashion_mnist(info: DatasetInfo, data_dir: Path | None, download: bool, verify: bool) -> Files:
    source, found = _fashion_files(data_dir)
    if not all(found.values()) and download:
        from torchvision.datasets import FashionMNIST

        root = data_dir or cache_dir() / "datasets"
        _staged_download(root, "FashionMNIST/raw", lambda staging: FashionMNIST(str(staging), download=True))
        source, found = _fashion_files(root)
    if not all(found.values()):
        if data_dir:
            missing = ", ".join(n for n, p in found.items() if p is None)
            raise EdgecnnError(f"fashion-mnist not found in {data_dir}: expected {missing} (optionally .gz), or "
                               "torchvision's layout DIR/FashionMNIST/raw")
        raise EdgecnnError("fashion-mnist not found: install Debian's dataset-fashion-mnist "
                           f"(files in {DEBIAN_FASHION_MNIST}), pass --data-dir, or --download when online")

    def split(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_path, labels_path = found[f"{prefix}-images-idx3-ubyte"], found[f"{prefix}-labels-idx1-ubyte"]
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if images.shape[1:] != (28, 28):
            raise EdgecnnError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images, not 28x28")
        if len(images) != len(labels):
            raise EdgecnnError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
        if len(labels) and labels.max() >= info.num_classes:
            raise EdgecnnError(f"{labels_path} has labels outside 0..{info.num_classes - 1}")
        padded = np.zeros((len(images), 1, 32, 32), np.uint8)
        padded[:, 0, 2:30, 2:30] = images  # 28x28 -> 32x32, black border
        return torch.from_numpy(padded), torch.from_numpy(labels.astype(np.int64))

    return Files(split("train"), split("t10k"), list(FASHION_CLASSES), source.resolve(), "format only")


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
