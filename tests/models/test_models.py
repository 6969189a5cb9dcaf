"""Every model builds for the project's input shapes and returns [B, C] logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ngl.models.networks import (
    OWN_MODELS,
    ResNetCIFAR,
    SmallCNN,
    available_models,
    build_model,
    paper_head,
)

SHAPES = [(1, 8), (1, 28), (3, 32)]  # digits, (Fashion-)MNIST, CIFAR
# A cross-section of torchvision (ResNet stem rewrite, depthwise convs, aux-logit model that
# needs upsampling, dense blocks); building all ~80 for three shapes would take minutes.
TORCHVISION = ["resnet18", "mobilenet_v3_small", "googlenet", "squeezenet1_1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _logits(model: nn.Module, c: int, s: int, num_classes: int, batch: int = 4) -> None:
    x = torch.randn(batch, c, s, s)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(x)
        assert isinstance(out, torch.Tensor)
        assert out.shape == (batch, num_classes)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(OWN_MODELS))
@pytest.mark.parametrize("c,s", SHAPES)
@pytest.mark.parametrize("head", ["linear", "paper"])
def test_own_models(name, c, s, head):
    torch.manual_seed(0)
    _logits(build_model(name, c, 7, s, head=head), c, s, 7)


@pytest.mark.parametrize("name", TORCHVISION)
@pytest.mark.parametrize("c,s", SHAPES)
def test_torchvision_models(name, c, s):
    torch.manual_seed(0)
    _logits(build_model(name, c, 5, s), c, s, 5)


def test_torchvision_paper_head_and_stem():
    model = build_model("resnet18", 1, 10, 8, head="paper")
    assert isinstance(model.fc, nn.Sequential) and model.fc[-1].out_features == 10
    assert model.conv1.in_channels == 1 and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    _logits(model, 1, 8, 10)
    # ImageNet-sized inputs keep the original stem.
    assert build_model("resnet18", 3, 10, 224).conv1.kernel_size == (7, 7)


def test_small_images_upsampled_where_needed():
    """InceptionV3 (the paper's search model) needs >= 75 px: upsampling goes in front."""
    model = build_model("inception_v3", 1, 10, 8)
    assert isinstance(model, nn.Sequential) and isinstance(model[0], nn.Upsample)
    _logits(model, 1, 8, 10, batch=2)


def test_paper_head_layout():
    head = paper_head(32, 5)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Flatten, nn.BatchNorm1d, nn.Linear, nn.ReLU, nn.Dropout, nn.BatchNorm1d,
                     nn.Linear, nn.ReLU, nn.Dropout, nn.BatchNorm1d, nn.Linear]
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 128), (128, 64), (64, 5)]
    assert all(m.p == 0.5 for m in head if isinstance(m, nn.Dropout))
    out = head(torch.randn(6, 32))
    assert out.shape == (6, 5)  # logits: no softmax, rows need not sum to 1
    assert not torch.allclose(out.exp().sum(1), torch.ones(6))


def test_unknown_name_and_bad_options():
    with pytest.raises(ValueError, match="small_cnn.*resnet18"):
        build_model("resnet_cifar_9000", 1, 10, 8)
    with pytest.raises(ValueError, match="head"):
        build_model("small_cnn", 1, 10, 8, head="mlp")
    with pytest.raises(ValueError, match="head"):
        build_model("resnet18", 1, 10, 8, head="mlp")
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNetCIFAR(depth=21)


def test_available_models_and_sizes():
    names = available_models()
    assert names[:4] == ["small_cnn", "dense_cnn", "small_inception", "resnet_cifar"]
    assert "resnet50" in names and "inception_v3" in names
    assert sum(p.numel() for p in ResNetCIFAR(3, 10, 32, depth=20).parameters()) == pytest.approx(
        0.27e6, rel=0.05)
    small = sum(p.numel() for p in SmallCNN(1, 10, 8).parameters())
    assert small < 50_000  # a fitness evaluation must stay cheap


def test_dense_cnn_keeps_the_spatial_map_and_counts_parameters_by_hand():
    from ngl.models import DenseCNN

    model = DenseCNN(1, 10, 28)
    # conv 1->32 (3x3, no bias) + BN(32); conv 32->64 + BN(64); 64*7*7 -> 128 -> 10
    by_hand = (9 * 32 + 2 * 32) + (9 * 32 * 64 + 2 * 64) + (64 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == by_hand
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    # 8x8 digits are not pooled: 64 * 8 * 8 features reach the dense layer
    digits = DenseCNN(1, 10, 8)
    assert digits.head[0].in_features == 64 * 8 * 8
    assert digits(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    paper = build_model("dense_cnn", 1, 10, 28, head="paper")
    assert paper(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
