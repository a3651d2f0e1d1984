"""Stage 1 of edgecnn: the model zoo (paper variants built from reusable blocks) and, later, training and compression."""
