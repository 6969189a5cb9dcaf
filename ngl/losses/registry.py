"""The loss registry: names (and aliases) to loss factories, and loss-expression text."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ngl.losses.zoo import (
    NGL,
    BaikalLoss,
    CrossEntropy,
    FocalLoss,
    LabelSmoothingCE,
    PolyLoss,
    SymmetricCE,
)

__all__ = ["get_loss", "available_losses", "register_loss", "register_text_compiler",
           "per_sample_losses", "loss_aliases", "display_name", "DISPLAY_NAMES"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropy,
    "ngl": NGL,
    "focal": FocalLoss,
    "label_smoothing": LabelSmoothingCE,
    "poly": PolyLoss,
    "baikal": BaikalLoss,
    "sce": SymmetricCE,
}
_ALIASES = {
    "cross_entropy": "ce",
    "crossentropy": "ce",
    "next_generation_loss": "ngl",
    "f5": "ngl",
    "focal_loss": "focal",
    "ls": "label_smoothing",
    "label_smoothing_ce": "label_smoothing",
    "poly1": "poly",
    "glo": "baikal",
    "symmetric_ce": "sce",
}
# What figures and tables print for a loss: readers of a paper know "Label smoothing", not the
# registry key "label_smoothing". "ce_l2" is no registered loss but a row of the paper's table.
DISPLAY_NAMES = {
    "ce": "CE",
    "ngl": "NGL",
    "focal": "Focal",
    "label_smoothing": "Label smoothing",
    "poly": "Poly-1",
    "baikal": "Baikal",
    "sce": "SCE",
    "ce_l2": "CE + L2",
}


def per_sample_losses(loss: nn.Module, logits: Tensor, target: Tensor) -> Tensor:
    """``loss`` evaluated with ``reduction="none"`` (its own setting restored afterwards)."""
    old = getattr(loss, "reduction", None)
    if old is None:
        raise ValueError(f"loss {loss!r} has no 'reduction' attribute; use an ngl loss module")
    loss.reduction = "none"
    try:
        return loss(logits, target)
    finally:
        loss.reduction = old


def register_loss(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make a loss available to :func:`get_loss` (e.g. the best expression of a search)."""
    key = name.lower()
    if key in _REGISTRY or key in _ALIASES:
        raise ValueError(f"a loss named {name!r} is already registered")
    _REGISTRY[key] = factory


def available_losses() -> list[str]:
    """Names accepted by :func:`get_loss` (aliases not included)."""
    return sorted(_REGISTRY)


TextCompiler = Callable[..., nn.Module]
_TEXT_COMPILER: list[TextCompiler] = []


def register_text_compiler(compiler: TextCompiler) -> None:
    """Let :func:`get_loss` compile loss-expression text (``ngl.gp`` registers its parser).

    This hook is why ``ngl.losses`` needs nothing from ``ngl.gp``: the layer above plugs in.
    ``compiler(text, **kwargs)`` returns a module, or raises ``ValueError`` with its message.
    """
    _TEXT_COMPILER[:] = [compiler]


def get_loss(name: str, **kwargs) -> nn.Module:
    """Build a loss by name, e.g. ``get_loss("focal", gamma=2)``.

    Names that are not registered go to the text compiler that :mod:`ngl.gp` registers: text
    that reads as a loss expression (``"1 - y_pred*y_real"``) is compiled, and a text that does
    not parse gets the parser's error with its position, not "unknown loss".
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str, got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key in _REGISTRY:
        return _REGISTRY[key](**kwargs)
    if _TEXT_COMPILER:
        return _TEXT_COMPILER[0](name, **kwargs)
    raise ValueError(f"unknown loss {name!r}: expected one of {available_losses()}, "
                     f"aliases {sorted(_ALIASES)}")


def loss_aliases() -> dict[str, str]:
    """Alias -> registered name (``"f5"`` -> ``"ngl"``)."""
    return dict(_ALIASES)


def display_name(key: str) -> str:
    """The printed name of a loss (``"label_smoothing"`` -> ``"Label smoothing"``, ``"f5"`` -> ``"NGL"``).

    Figures and tables label losses with it while their data keep the registry keys. Aliases
    resolve through the alias table; anything else (a found loss's formula, ``"#1"``, a name the
    caller chose such as ``"focal γ=2"``) comes back unchanged.
    """
    text = str(key)
    low = text.lower()
    return DISPLAY_NAMES.get(_ALIASES.get(low, low), text)
