"""Datasets: real CIFAR pickle format on generated files, Fashion-MNIST from the Debian package, the split."""

import gzip
import pickle
import shutil

import pytest
import torch
from torchvision import transforms

from edgecnn.data import (DEBIAN_FASHION_MNIST, SYNTHETIC_MARKER, load_dataset, normalize,
                          write_synthetic_cifar)
from edgecnn.errors import EdgecnnError


@pytest.fixture(scope="module")
def cifar_dirs(tmp_path_factory):
    root10, root100 = tmp_path_factory.mktemp("c10"), tmp_path_factory.mktemp("c100")
    write_synthetic_cifar(root10, 10, train_size=500, test_size=100, seed=1)
    write_synthetic_cifar(root100, 100, train_size=1000, test_size=200, seed=2)
    return root10, root100


def test_synthetic_cifar10_is_in_the_real_pickle_format(cifar_dirs):
    folder = cifar_dirs[0] / "cifar-10-batches-py"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                     SYNTHETIC_MARKER, "test_batch"]
    with open(folder / "data_batch_1", "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")  # the classic CIFAR snippet: bytes keys
    assert set(batch) == {b"batch_label", b"data", b"labels", b"filenames"}
    assert batch[b"data"].shape == (100, 3072) and batch[b"data"].dtype.name == "uint8"
    with open(folder / "batches.meta", "rb") as handle:
        assert pickle.load(handle, encoding="latin1")["label_names"][0] == "pattern00"  # torchvision's way


def test_synthetic_cifar100_has_fine_and_coarse_labels(cifar_dirs):
    with open(cifar_dirs[1] / "cifar-100-python" / "train", "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    assert {b"fine_labels", b"coarse_labels", b"data"} <= set(batch)
    assert max(batch[b"fine_labels"]) == 99


@pytest.mark.parametrize("name,index,classes", [("cifar10", 0, 10), ("cifar100", 1, 100)])
def test_cifar_loads_through_torchvision(cifar_dirs, name, index, classes):
    data = load_dataset(name, cifar_dirs[index])
    assert data.info.num_classes == classes and len(data.classes) == classes
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 32, 32)
    total = 500 if name == "cifar10" else 1000
    assert len(data.train) + len(data.val) == total and len(data.val) == total // 10
    assert len(data.test) == total // 5
    assert int(data.train.labels.max()) < classes


def test_split_is_seeded_disjoint_and_never_the_test_set(cifar_dirs):
    a, b = load_dataset("cifar10", cifar_dirs[0]), load_dataset("cifar10", cifar_dirs[0])
    assert torch.equal(a.val.images, b.val.images)  # same split every time
    train = {bytes(x.numpy()) for x in a.train.images}
    val = {bytes(x.numpy()) for x in a.val.images}
    test = {bytes(x.numpy()) for x in a.test.images}
    assert not train & val and not (train | val) & test


def test_real_cifar_folder_with_wrong_checksums_is_refused(tmp_path, cifar_dirs):
    shutil.copytree(cifar_dirs[0], tmp_path, dirs_exist_ok=True)
    (tmp_path / "cifar-10-batches-py" / SYNTHETIC_MARKER).unlink()  # now it claims to be the real CIFAR-10
    with pytest.raises(EdgecnnError, match="not Toronto's \\(checksum mismatch in data_batch_1\\); .*--no-verify"):
        load_dataset("cifar10", tmp_path)
    data = load_dataset("cifar10", tmp_path, verify=False)  # a user's own copy, taken as it is when asked
    assert data.checksums == "not checked" and data.describe()["checksums"] == "not checked"
    assert len(data.test) == 100


def test_missing_cifar_says_where_to_put_it(tmp_path):
    with pytest.raises(EdgecnnError) as info:
        load_dataset("cifar100", tmp_path)
    assert str(info.value) == (f"cifar100 not found in {tmp_path}: put the extracted python version there "
                               f"({tmp_path}/cifar-100-python/...), or pass --download when online")


def test_corrupt_cifar_batch_is_a_clear_error(tmp_path, cifar_dirs):
    shutil.copytree(cifar_dirs[0], tmp_path, dirs_exist_ok=True)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(EdgecnnError, match="not in CIFAR's python format"):
        load_dataset("cifar10", tmp_path)


def test_fashion_mnist_from_the_debian_package():
    assert (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(), ".ci/run installs dataset-fashion-mnist"
    data = load_dataset("fashion-mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (54_000, 6_000, 10_000)
    assert data.train.images.shape[1:] == (1, 32, 32) and data.in_chans == 1
    assert data.train.images[:, :, :2].max() == 0 and data.train.images[:, :, :, -2:].max() == 0  # black padding
    assert data.classes[9] == "Ankle boot"
    described = data.describe()
    assert described["mean"] == [0.219] and described["std"] == [0.3318]
    rgb = load_dataset("fashion-mnist", in_chans=3)
    assert rgb.train.images.shape[1] == 3 and torch.equal(rgb.train.images[:5, 0], rgb.train.images[:5, 2])
    assert len(rgb.mean) == 3


def test_fashion_mnist_from_a_torchvision_layout_dir(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in DEBIAN_FASHION_MNIST.glob("*.gz"):
        (raw / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    assert len(load_dataset("fashion-mnist", tmp_path).test) == 10_000


def test_fashion_mnist_wrong_layout_and_corrupt_files(tmp_path):
    with pytest.raises(EdgecnnError, match="fashion-mnist not found in .*expected train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", tmp_path)
    for gz in DEBIAN_FASHION_MNIST.glob("*.gz"):
        shutil.copy(gz, tmp_path / gz.name)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(EdgecnnError, match="t10k-labels-idx1-ubyte.gz is not an IDX file"):
        load_dataset("fashion-mnist", tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")  # gzip magic, broken stream
    with pytest.raises(EdgecnnError, match="cannot read .*t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)


def test_grey_to_rgb_only_one_way(cifar_dirs):
    with pytest.raises(EdgecnnError, match="3-channel images"):
        load_dataset("cifar10", cifar_dirs[0], in_chans=1)


def test_unknown_dataset_suggests():
    with pytest.raises(EdgecnnError, match="unknown dataset 'cifar-10'; did you mean cifar10"):
        load_dataset("cifar-10")


def test_normalize_matches_torchvision():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    reference = torch.stack([transforms.Normalize(mean, std)(img.float() / 255) for img in images])
    torch.testing.assert_close(normalize(images, mean, std), reference)


def idx_bytes(kind: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = bytes([0, 0, kind, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + payload


def fashion_subset(folder, train: int, test: int) -> None:
    """A Fashion-MNIST folder holding the first `train`/`test` images of the Debian files (a user's own subset)."""
    from edgecnn.data import read_idx

    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("t10k", test)):
        images = read_idx(DEBIAN_FASHION_MNIST / f"{name}-images-idx3-ubyte.gz", 3)[:count]
        labels = read_idx(DEBIAN_FASHION_MNIST / f"{name}-labels-idx1-ubyte.gz", 1)[:count]
        (folder / f"{name}-images-idx3-ubyte").write_bytes(idx_bytes(8, images.shape, images.tobytes()))
        (folder / f"{name}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(8, labels.shape,
                                                                                     labels.tobytes())))


def test_each_source_is_read_as_it_is_in_either_order(tmp_path):
    """A subset given with --data-dir and the default source never stand in for each other, whichever comes first,
    and a truncated folder poisons nothing."""
    fashion_subset(tmp_path / "subset", 300, 50)
    for order in (("subset", None), (None, "subset")):
        for which in order:
            data = load_dataset("fashion-mnist", tmp_path / which if which else None)
            assert len(data.test) == (50 if which else 10_000)
    subset, full = load_dataset("fashion-mnist", tmp_path / "subset"), load_dataset("fashion-mnist")
    assert subset.fingerprint != full.fingerprint and subset.source == str((tmp_path / "subset").resolve())
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "subset", broken)
    (broken / "train-images-idx3-ubyte").write_bytes((broken / "train-images-idx3-ubyte").read_bytes()[:5000])
    with pytest.raises(EdgecnnError, match=r"train-images-idx3-ubyte is truncated: its header says 300x28x28"):
        load_dataset("fashion-mnist", broken)
    assert len(load_dataset("fashion-mnist").test) == 10_000  # the intact default is still read


@pytest.mark.parametrize("kind,shape,size,message", [
    (0x0D, (3, 28, 28), 3 * 28 * 28 * 4, "is an IDX file of 32-bit floats, not unsigned bytes"),
    (0x08, (3, 28), 3 * 28, "has 2 dimensions, not 3"),
    (0x08, (3, 30, 30), 3 * 900, "holds 30x30 images, not 28x28"),
    (0x08, (3, 28, 28), 3 * 784 + 7, "is too long"),
])
def test_malformed_idx_files_are_one_line_errors_naming_the_users_file(tmp_path, kind, shape, size, message):
    fashion_subset(tmp_path, 3, 3)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(kind, shape, bytes(size)))
    with pytest.raises(EdgecnnError) as info:
        load_dataset("fashion-mnist", tmp_path)
    assert str(tmp_path / "train-images-idx3-ubyte") in str(info.value) and message in str(info.value)


def test_python3_pickles_of_a_users_own_cifar_copy_need_no_verify(tmp_path, cifar_dirs):
    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dirs[0] / "cifar-10-batches-py", folder)
    (folder / SYNTHETIC_MARKER).unlink()
    for path in folder.iterdir():  # re-pickled as Python 3 would write them: str keys, protocol 5
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        if "data" in entry:
            entry = {"data": np.ascontiguousarray(entry["data"][:60]), "labels": entry["labels"][:60]}
        path.write_bytes(pickle.dumps(entry, protocol=5))
    with pytest.raises(EdgecnnError, match="checksum mismatch.*--no-verify"):
        load_dataset("cifar10", tmp_path)
    data = load_dataset("cifar10", tmp_path, verify=False)
    assert len(data.train) + len(data.val) == 300 and len(data.test) == 60


def test_a_pickle_that_would_run_code_is_refused(tmp_path, cifar_dirs):
    shutil.copytree(cifar_dirs[0], tmp_path, dirs_exist_ok=True)
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps({"data": Hostile()}))
    with pytest.raises(EdgecnnError, match="not in CIFAR.s python format: .*it refers to (io|builtins).open"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


def test_load_recorded_finds_the_runs_own_data_and_refuses_other_data(tmp_path):
    from edgecnn.data import load_recorded

    fashion_subset(tmp_path / "subset", 200, 40)
    described = load_dataset("fashion-mnist", tmp_path / "subset").describe()
    assert len(load_recorded(described, what="run r").test) == 40  # its recorded source, without --data-dir
    fashion_subset(tmp_path / "other", 200, 41)
    with pytest.raises(EdgecnnError, match=r"run r was made with fashion-mnist from .*subset \(180/20/40 images\), "
                                           r"but the data found in .*other differs \(180/20/41\)"):
        load_recorded(described, tmp_path / "other", what="run r")
    assert len(load_recorded(described, tmp_path / "other", what="run r", strict=False).test) == 41
