import ast
from pathlib import Path

import pytest
import torch

from edgecnn.compress.zoo import get_entry, get_model, list_models, resolve
from edgecnn.compress.zoo.registry import register
from edgecnn.errors import EdgecnnError, UnknownNameError

ZOO = Path(__file__).resolve().parents[2] / "compress" / "zoo"


def test_short_names_resolve_to_the_resnet101_line():
    assert resolve("exp13") == "resnet101-exp13"
    assert resolve("EXP1") == "resnet101-exp1"
    assert resolve("exp15") == "resnet101-exp15"
    assert resolve("resnet101_exp13") == "resnet101-exp13"
    assert resolve(" vgg19-exp8 ") == "vgg19-exp8"


def test_every_expn_alias_exists():
    for n in range(1, 16):
        assert resolve(f"exp{n}") == f"resnet101-exp{n}"


def test_list_models_is_natural_sorted_and_filters():
    names = list_models("resnet101-*")
    assert names == [f"resnet101-exp{n}" for n in range(1, 16)]
    assert list_models("vgg19-exp1?") == ["vgg19-exp10", "vgg19-exp11", "vgg19-exp12", "vgg19-exp13"]
    assert {"resnet18", "vgg16-bn", "micronet-densenet"} <= set(list_models())
    assert list_models("nothing*") == []


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownNameError) as info:
        resolve("exp99")
    message = str(info.value)
    assert message.startswith("unknown model 'exp99'; did you mean ")
    assert "exp9" in message and "\n" not in message
    assert isinstance(info.value, EdgecnnError)
    with pytest.raises(UnknownNameError, match="did you mean resnet101-exp3"):
        resolve("resnet101-exp31")


def test_unknown_name_without_close_match_still_one_line():
    with pytest.raises(UnknownNameError) as info:
        resolve("zzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "edgecnn models" in str(info.value)


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="twice"):
        register("resnet101-exp13", lambda nc, ch: torch.nn.Identity(), family="x", techniques=(), summary="")


def test_bad_build_arguments():
    with pytest.raises(ValueError, match="in_chans"):
        get_model("exp13", in_chans=2)
    with pytest.raises(ValueError, match="num_classes"):
        get_model("exp13", num_classes=0)


def test_variant_files_are_declarations_only():
    """Blocks are written once in compress/layers: the variant files define no classes and build no layers."""
    for path in (ZOO / "resnet101.py", ZOO / "vgg19.py"):
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)], path.name
        calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & {"Conv2d", "BatchNorm2d", "Linear", "Sequential"}, path.name


def test_entries_carry_techniques_and_quirks():
    assert "ghost" in get_entry("exp13").techniques
    assert any("ReLU6" in q for q in get_entry("exp13").quirks)
    assert any("8,448" in q for q in get_entry("exp15").quirks)
    assert get_entry("vgg19-exp13").spec.head.logit_act == "relu"
    assert get_entry("exp13").spec.head.logit_act == "relu6"
    assert get_entry("exp10").spec.head.logit_act is None
