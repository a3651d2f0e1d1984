import torch
import torchvision.transforms.v2.functional as TF

from edgecnn.compress.train.augment import EpochAugment, mix


def test_crop_and_flip_match_torchvision_per_sample():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    indices = torch.tensor([5, 0, 3, 1, 4, 2])
    aug = EpochAugment(6, seed=1, epoch=2)
    out = aug(images[indices], indices)
    for row, index in enumerate(indices):
        dy, dx = aug.offsets[index].tolist()
        expected = TF.crop(TF.pad(images[index], [4]), dy, dx, 32, 32)
        if aug.flips[index]:
            expected = TF.horizontal_flip(expected)
        assert torch.equal(out[row], expected)


def test_augmentation_depends_on_sample_not_batch_position():
    images = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    aug = EpochAugment(8, seed=0, epoch=0)
    whole = aug(images, torch.arange(8))
    halves = torch.cat([aug(images[0::2], torch.arange(0, 8, 2)), aug(images[1::2], torch.arange(1, 8, 2))])
    assert torch.equal(whole[torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])], halves)
    assert not torch.equal(EpochAugment(8, 0, 1).offsets, aug.offsets)  # new epoch, new draw


def test_mix_returns_soft_targets_summing_to_one():
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    g = torch.Generator().manual_seed(0)
    mixed, soft = mix(x, y, 10, 0.2, 1.0, g)
    assert soft.shape == (16, 10) and torch.allclose(soft.sum(1), torch.ones(16))
    same, labels = mix(x, y, 10, 0.0, 0.0, g)
    assert same is x and labels is y


def test_grayscale_batches_come_back_in_plain_nchw_strides():
    # A one-channel permuted view passes .contiguous() unchanged with channels-last strides, and every conv after
    # it then ran channels-last: oneDNN's 1x1 stride-2 backward-weights kernel corrupted the heap in that layout
    # on narrow pruned widths (a real crash while fine-tuning a pruned exp11). Batches must be plain NCHW.
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    out = EpochAugment(4, seed=0, epoch=0)(images, torch.arange(4))
    assert out.stride() == torch.empty(out.shape).stride() == (784, 784, 28, 1)
    features = torch.nn.Conv2d(1, 6, 3, padding=1)(out.float())
    assert features.stride() == torch.empty(features.shape).stride()
