"""Every paper variant reproduces the published parameter count exactly, fvcore FLOPs to +-0.01 M and the
checkpoint size to +-0.02 MiB, at 10 and at 100 classes (paper-spec.md section 4)."""

import pytest

from edgecnn.compress.zoo import count_mflops, count_params, get_model, list_models, state_dict_mib
from edgecnn.compress.zoo.paper import PUBLISHED, published

PAPER_VARIANTS = list_models("resnet101-*") + list_models("vgg19-*")


def test_the_paper_has_28_variants_and_56_published_rows():
    assert len(PAPER_VARIANTS) == 28
    assert sorted(PUBLISHED) == sorted((name, nc) for name in PAPER_VARIANTS for nc in (10, 100))


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_counts_match_paper(name, num_classes):
    paper = published(name, num_classes)
    model = get_model(name, num_classes=num_classes)
    assert count_params(model) == paper.params
    assert count_mflops(model) == pytest.approx(paper.expected("mflops"), abs=0.01)
    if paper.expected("size_mib") is not None:
        # the paper's size is a Lightning checkpoint: our bare state_dict plus at most ~0.011 MiB of metadata
        assert state_dict_mib(model) == pytest.approx(paper.expected("size_mib"), abs=0.02)


def test_readme_errata_are_flagged_and_corrected():
    assert published("resnet101-exp12", 10).size_mib == 7.70
    assert published("resnet101-exp12", 10).expected("size_mib") == 5.70
    assert published("resnet101-exp10", 100).expected("mflops") == 32.84


def test_headline_model_is_280x_smaller_than_the_baseline():
    ratio = published("resnet101-exp1", 10).params / published("resnet101-exp13", 10).params
    assert 280 < ratio < 283  # the paper's abstract: "~280x fewer parameters"


@pytest.mark.parametrize("name,approx_params", [("resnet18", 11_173_962), ("vgg16-bn", 14_991_946)])
def test_seed_baselines_match_their_study(name, approx_params):
    assert count_params(get_model(name, 10)) == approx_params


def test_micronet_densenet_is_about_110k_parameters():
    assert 100_000 <= count_params(get_model("micronet-densenet", 10)) <= 120_000
