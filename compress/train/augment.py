"""Batch-level augmentation on uint8 images in memory, deterministic per (seed, epoch, sample index).

Random crop with 4-pixel zero padding + horizontal flip, as torchvision's RandomCrop(32, 4) + RandomHorizontalFlip
after ToTensor (the padding is black, then normalised). Drawing each sample's crop and flip from its index rather
than its position in a batch makes a run independent of how batches are split: across DDP ranks, across
gradient-accumulation micro-batches, and across an interruption and resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class EpochAugment:
    def __init__(self, num_samples: int, seed: int, epoch: int, padding: int = 4):
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        self.padding = padding
        self.offsets = torch.randint(0, 2 * padding + 1, (num_samples, 2), generator=g)
        self.flips = torch.rand(num_samples, generator=g) < 0.5

    def __call__(self, images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) of samples `indices` -> augmented uint8 batch."""
        b, _, h, w = images.shape
        p = self.padding
        padded = F.pad(images, (p, p, p, p))
        dy, dx = self.offsets[indices, 0], self.offsets[indices, 1]
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
        cols = dx[:, None] + torch.arange(w)  # (B, W)
        cols = torch.where(self.flips[indices][:, None], cols.flip(1), cols)[:, None, :]  # (B, 1, W)
        batch = torch.arange(b)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        # clone, not .contiguous(): with one channel the permuted view already counts as contiguous but keeps
        # channels-last strides, and every conv after it then ran channels-last. oneDNN's 1x1 strided
        # backward-weights kernel in that layout corrupts the heap on narrow pruned widths (6 -> 10 channels,
        # stride 2; tests/compress/test_augment.py), and the rest of the zoo trains in NCHW anyway.
        return out.clone(memory_format=torch.contiguous_format)


def mix(images: torch.Tensor, targets: torch.Tensor, num_classes: int, mixup: float, cutmix: float,
        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix (one of the enabled ones, chosen at random per batch) -> images, soft targets.
    With both off, the batch and its class indices come back unchanged."""
    modes = [m for m, alpha in (("mixup", mixup), ("cutmix", cutmix)) if alpha > 0]
    if not modes:
        return images, targets
    soft = F.one_hot(targets, num_classes).float()
    mode = modes[int(torch.randint(len(modes), (1,), generator=generator))]
    alpha = mixup if mode == "mixup" else cutmix
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(images), generator=generator)
    if mode == "mixup":
        mixed = images * lam + images[perm] * (1 - lam)
    else:
        h, w = images.shape[-2:]
        cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy, cx = int(torch.randint(h, (1,), generator=generator)), int(torch.randint(w, (1,), generator=generator))
        y0, y1, x0, x1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        mixed = images.clone()
        mixed[:, :, y0:y1, x0:x1] = images[perm][:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, soft * lam + soft[perm] * (1 - lam)
