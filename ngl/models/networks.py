"""Classification networks for the loss search and the downstream tables.

The paper scores candidate losses by training InceptionV3 and evaluates the winners on
ResNet50 and InceptionV3 with a custom dense head. On CPU that is out of reach, so this
module offers small stand-ins with the same ingredients (BatchNorm everywhere, Inception
branches, residual blocks), the paper's head as an option, and any torchvision
classification model by name for GPU runs. Every model returns logits (no softmax): the
losses in `ngl` apply softmax themselves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torchvision
from torch import Tensor, nn

__all__ = [
    "SmallCNN",
    "DenseCNN",
    "SmallInception",
    "ResNetCIFAR",
    "paper_head",
    "build_model",
    "available_models",
    "OWN_MODELS",
]


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _two_conv_blocks(in_channels: int, width: int, input_size: int) -> list[nn.Module]:
    """Two conv-BN-ReLU blocks (width, 2 x width), each max-pooled for inputs of 16 px or more."""
    pool: Callable[[], nn.Module] = (
        (lambda: nn.MaxPool2d(2)) if input_size >= 16 else nn.Identity
    )
    return [_conv_bn_relu(in_channels, width), pool(), _conv_bn_relu(width, 2 * width), pool()]


def paper_head(in_features: int, num_classes: int, hidden: tuple[int, int] = (128, 64),
               dropout: float = 0.5) -> nn.Sequential:
    """The authors' downstream top: Flatten-BN-Dense(128)-Drop-BN-Dense(64)-Drop-BN-Dense(C).

    The final softmax of the Keras original is left out because `ngl` losses take logits.
    """
    h1, h2 = hidden
    return nn.Sequential(
        nn.Flatten(),
        nn.BatchNorm1d(in_features),
        nn.Linear(in_features, h1),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.BatchNorm1d(h1),
        nn.Linear(h1, h2),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.BatchNorm1d(h2),
        nn.Linear(h2, num_classes),
    )


def _make_head(kind: str, in_features: int, num_classes: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "paper":
        return paper_head(in_features, num_classes)
    raise ValueError(f"unknown head {kind!r}; choose 'linear' or 'paper'")


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU blocks, global average pooling and a head.

    Small enough that a loss-search fitness (a few hundred steps) runs in seconds on CPU,
    yet it has BatchNorm, which losses that blow up logits interact with. For inputs of
    16 px or more a 2x2 max-pool follows each block (28x28 -> 7x7); 8x8 digits keep full
    resolution.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 width: int = 32, head: str = "linear") -> None:
        super().__init__()
        self.features = nn.Sequential(*_two_conv_blocks(in_channels, width, input_size),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _make_head(head, 2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class DenseCNN(nn.Module):
    """Two conv-BN-ReLU blocks, each max-pooled, then a dense hidden layer: the downstream default.

    Unlike :class:`SmallCNN` it keeps the spatial map (flatten, not global pooling) and adds a
    hidden layer with dropout, so it does not underfit 28x28 data: about 91-92 % CE test
    accuracy on Fashion-MNIST after 4 epochs of Adam on a 2-core CPU (see
    ``benchmarks/downstream_default.py``). ``head="paper"`` replaces the hidden layer with the
    authors' dense head. 8x8 digits keep full resolution.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 width: int = 32, hidden: int = 128, dropout: float = 0.3,
                 head: str = "linear") -> None:
        super().__init__()
        pooled = input_size // 4 if input_size >= 16 else input_size
        self.features = nn.Sequential(*_two_conv_blocks(in_channels, width, input_size),
                                      nn.Flatten())
        flat = 2 * width * pooled * pooled
        if head == "linear":
            self.head: nn.Module = nn.Sequential(
                nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(hidden, num_classes))
        else:
            self.head = _make_head(head, flat, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class _InceptionBlock(nn.Module):
    """Parallel 1x1 / 3x3 / 5x5 (as two 3x3, as in InceptionV3) / pool branches, concatenated."""

    def __init__(self, cin: int, b1: int, b3: int, b5: int, bp: int) -> None:
        super().__init__()
        self.branch1 = _conv_bn_relu(cin, b1, 1)
        self.branch3 = nn.Sequential(_conv_bn_relu(cin, b3 // 2, 1), _conv_bn_relu(b3 // 2, b3))
        self.branch5 = nn.Sequential(
            _conv_bn_relu(cin, b5 // 2, 1), _conv_bn_relu(b5 // 2, b5), _conv_bn_relu(b5, b5)
        )
        self.branch_pool = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), _conv_bn_relu(cin, bp, 1)
        )
        self.out_channels = b1 + b3 + b5 + bp

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1
        )


class SmallInception(nn.Module):
    """A two-block Inception network: the paper's search model (InceptionV3) in miniature."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 width: int = 16, head: str = "linear") -> None:
        super().__init__()
        w = width
        self.stem = _conv_bn_relu(in_channels, 2 * w)
        self.block1 = _InceptionBlock(2 * w, w, 2 * w, w, w)
        self.pool = nn.MaxPool2d(2) if input_size >= 16 else nn.Identity()
        self.block2 = _InceptionBlock(self.block1.out_channels, 2 * w, 3 * w, w, w)
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _make_head(head, self.block2.out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block1(self.stem(x))
        x = self.block2(self.pool(x))
        return self.head(self.gap(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            # Projection shortcut (option B of He et al.); option A's zero-padding saves
            # parameters but makes no difference for loss comparisons.
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, section 4.2): depth = 6n + 2, widths 16/32/64.

    The paper evaluated on ResNet50; ResNet-20 is the usual small-image proxy.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
                 depth: int = 20, width: int = 16, head: str = "linear") -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        n = (depth - 2) // 6
        del input_size  # global pooling makes the network size-agnostic
        self.stem = _conv_bn_relu(in_channels, width)
        layers: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(_BasicBlock(cin, cout, stride))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _make_head(head, cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.gap(self.layers(self.stem(x))))


OWN_MODELS: dict[str, type[nn.Module]] = {
    "small_cnn": SmallCNN,
    "dense_cnn": DenseCNN,
    "small_inception": SmallInception,
    "resnet_cifar": ResNetCIFAR,
}

# torchvision models whose auxiliary classifiers would make forward() return a tuple in
# training mode; the search needs plain logits.
_TV_DEFAULT_KW: dict[str, dict[str, object]] = {
    "inception_v3": {"aux_logits": False, "init_weights": True},
    "googlenet": {"aux_logits": False, "init_weights": True},
}

# Input sizes tried, in order, when a torchvision model rejects small images; the chosen
# size is reached by upsampling in front of the network (the authors upsampled CIFAR to
# 256x256 for InceptionV3).
_PROBE_SIZES = (32, 64, 80, 128, 224, 299)


def _torchvision_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def available_models() -> list[str]:
    """Names accepted by `build_model`: the small own models, then torchvision's classifiers."""
    return list(OWN_MODELS) + _torchvision_names()


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    return None


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    found = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            found = (name, m)
    return found


def _adapt_torchvision(name: str, model: nn.Module, in_channels: int, input_size: int) -> nn.Module:
    """Make an ImageNet-shaped torchvision model accept `in_channels` x `input_size`^2."""
    first = _first_conv(model)
    if first is not None:
        conv_name, conv = first
        small_resnet_stem = (
            input_size < 64
            and hasattr(model, "maxpool")
            and conv_name == "conv1"
            and conv.kernel_size == (7, 7)
        )
        if conv.in_channels != in_channels or small_resnet_stem:
            # ResNet-family on small images: the CIFAR recipe (3x3 stride-1 stem, no max-pool)
            # instead of throwing away 15/16 of the pixels in the stem.
            kernel, stride, padding = (
                (3, 1, 1) if small_resnet_stem else (conv.kernel_size, conv.stride, conv.padding)
            )
            new = nn.Conv2d(in_channels, conv.out_channels, kernel, stride=stride,
                            padding=padding, dilation=conv.dilation, groups=1,
                            bias=conv.bias is not None)
            if conv.groups != 1:
                raise ValueError(f"{name}: cannot adapt a grouped first convolution")
            _replace(model, conv_name, new)
            if small_resnet_stem:
                model.maxpool = nn.Identity()
    return _fit_input_size(name, model, in_channels, input_size)


def _fit_input_size(name: str, model: nn.Module, in_channels: int, input_size: int) -> nn.Module:
    """Probe whether `model` runs at `input_size`; if not, prepend bilinear upsampling."""

    def runs(size: int) -> bool:
        x = torch.zeros(2, in_channels, size, size)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model(x)
            return True
        except (RuntimeError, ValueError, AssertionError, IndexError):
            return False
        finally:
            model.train(was_training)

    if runs(input_size):
        return model
    for size in _PROBE_SIZES:
        if size > input_size and runs(size):
            return nn.Sequential(
                nn.Upsample(size=(size, size), mode="bilinear", align_corners=False), model
            )
    raise ValueError(f"{name}: no input size up to {_PROBE_SIZES[-1]} px works")


def build_model(name: str, in_channels: int, num_classes: int, input_size: int,
                head: str = "linear", **kw: object) -> nn.Module:
    """Build a logits-producing classifier by name.

    `head="paper"` swaps the last linear layer for the authors' dense head (`paper_head`).
    Extra keyword arguments go to the constructor (e.g. `depth=32`, `width=64`, or
    torchvision options). torchvision models are built from scratch (`weights=None`) and
    adapted to small inputs: new first convolution for other channel counts, CIFAR stem
    for the ResNet family, and upsampling in front where the network needs larger images.
    """
    if name in OWN_MODELS:
        return OWN_MODELS[name](in_channels=in_channels, num_classes=num_classes,
                                input_size=input_size, head=head, **kw)
    tv_names = _torchvision_names()
    if name not in tv_names:
        raise ValueError(
            f"unknown model {name!r}; choose one of {sorted(OWN_MODELS)} or a torchvision "
            f"classification model ({', '.join(tv_names)})"
        )
    if head not in ("linear", "paper"):
        raise ValueError(f"unknown head {head!r}; choose 'linear' or 'paper'")
    kwargs = {**_TV_DEFAULT_KW.get(name, {}), **kw}
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if head == "paper":
        last = _last_linear(model)
        if last is None:  # e.g. squeezenet ends with a 1x1 convolution
            raise ValueError(f"{name}: no final linear layer to replace with the paper head")
        lin_name, lin = last
        _replace(model, lin_name, paper_head(lin.in_features, num_classes))
    return _adapt_torchvision(name, model, in_channels, input_size)
