"""Training: recipes, batch augmentation and the (distributed, resumable) loop."""

from .loop import Reporter, TrainConfig, evaluate, train
from .recipes import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "Reporter", "TrainConfig", "evaluate", "get_recipe", "train"]
