"""Knowledge distillation (Hinton et al.; tried in the MicroNet write-up): a student zoo model learns from a
trained teacher run's softened outputs and the labels.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

The T^2 keeps the soft term's gradients on the scale of the hard term's as T grows. The teacher runs in eval mode
on the same augmented, normalised batch as the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(teacher: torch.nn.Module, temperature: float = 4.0, alpha: float = 0.9):
    """A finetune() loss_fn: (student logits, normalised images, labels) -> scalar."""
    if temperature <= 0 or not 0 <= alpha <= 1:
        raise ValueError("distillation needs temperature > 0 and 0 <= alpha <= 1")
    teacher.eval()

    def loss(logits: torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft_targets = F.log_softmax(teacher(images) / temperature, dim=1)
        soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft_targets, reduction="batchmean",
                        log_target=True)
        return alpha * temperature ** 2 * soft + (1 - alpha) * F.cross_entropy(logits, labels)

    return loss


def distill(parent, student: str, *, temperature: float = 4.0, alpha: float = 0.9, finetune_config=None,
            runs_dir=None, name=None, reporter=None, seed: int = 0):
    """Train a fresh `student` (zoo name) from the `parent` teacher run; returns (DerivedRun, result)."""
    from dataclasses import asdict

    from edgecnn.compress.zoo import get_model, resolve

    from .finetune import FinetuneConfig, finetune
    from .lineage import DerivedRun

    config = finetune_config or FinetuneConfig(epochs=30, lr=0.05, schedule="cosine", patience=0)
    config.check()
    payload = parent.payload
    torch.manual_seed(seed)
    student_name = resolve(student)
    model = get_model(student_name, payload["num_classes"], payload["in_chans"])
    settings = {"student": student_name, "temperature": temperature, "alpha": alpha, "finetune": asdict(config)}
    run = DerivedRun(parent, "distill", settings, runs_dir, name, student=(student_name, model))
    records = finetune(model, parent.data, config, loss_fn=distillation_loss(parent.model, temperature, alpha),
                       reporter=reporter)
    run.write_metrics(records)
    run.save(model, "best.pt")
    return run, run.finish(model, teacher=payload["model"])
