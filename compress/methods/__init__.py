"""Post-training compression of a finished run: the paper's iterative L1 pruning, structured (filter) pruning,
distillation and quantization-aware training. Each method reads a run and writes a new run (lineage recorded), so
export and bench take a compressed model exactly like a trained one."""

from .finetune import FinetuneConfig, finetune
from .lineage import DerivedRun, load_parent

__all__ = ["DerivedRun", "FinetuneConfig", "finetune", "load_parent"]
