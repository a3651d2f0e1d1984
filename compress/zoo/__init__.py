"""The model zoo: every Sobolewski & Szyc variant as a declarative entry, plus the seeds' baselines.

>>> from edgecnn.compress.zoo import get_model, list_models
>>> model = get_model("exp13", num_classes=10, in_chans=1)
"""

from . import baselines, resnet101, vgg19  # noqa: F401  (importing registers the entries)
from .measure import count_mflops, count_params, settle_batchnorm, state_dict_mib
from .registry import ModelEntry, get_entry, get_model, is_zoo, list_models, model_slug, model_source, resolve

__all__ = ["ModelEntry", "count_mflops", "count_params", "get_entry", "get_model", "is_zoo", "list_models", "model_slug",
           "model_source", "resolve", "settle_batchnorm", "state_dict_mib"]
