"""The compress stage: the model zoo (variants built from reusable blocks), training, post-training compression
(pruning, distillation, QAT, the clean head), and rebuilding any run's model from its checkpoint (rebuild.py)."""
