"""The loss registry: names (and aliases) to loss factories, and loss-expression text."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BeforeValidator
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
           "per_sample_losses", "loss_aliases", "display_name", "DISPLAY_NAMES",
           "normalise_loss_spec", "normalise_loss_specs", "loss_specs_field", "loss_spec_label", "build_loss_spec", "canonical_loss_name",
           "expression_text", "as_loss_module"]

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
    text = expression_text(name)  # a loss expression object (e.g. a hall-of-fame entry)
    if text is not None:
        name = text
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str or a loss expression, got "
                        f"{type(name).__name__}")
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

    A row label of a dict spec (``"focal(gamma=2.0)"``, :func:`loss_spec_label`) is the
    display name with its arguments: ``"Focal (gamma=2.0)"``.
    """
    text = str(key)
    low = text.lower()
    m = re.fullmatch(r"([a-z0-9_]+)\((.+)\)", low)
    if m and _ALIASES.get(m[1], m[1]) in DISPLAY_NAMES:  # a registered loss with arguments
        return f"{DISPLAY_NAMES[_ALIASES.get(m[1], m[1])]} ({text[len(m[1]) + 1:-1]})"
    return DISPLAY_NAMES.get(_ALIASES.get(low, low), text)


# -- loss specs: what configs (grids, a search's references) name a loss with ------------------
LossSpec = str | Mapping[str, Any]
"""A registered name (``"ce"``), a dict ``{"name": "focal", "gamma": 2}`` (an optional
``"label"`` names it in tables), or loss-expression text."""


def expression_text(obj: Any) -> str | None:
    """The loss-expression text of anything that is a loss expression (the one protocol: an
    object with ``__loss_expression__()``, e.g. ``LossExpression`` or a hall-of-fame entry),
    else None. Every function that takes a loss accepts such an object through it."""
    method = getattr(obj, "__loss_expression__", None)
    return str(method()) if callable(method) else None


def as_loss_module(obj: Any) -> nn.Module:
    """A loss module from a module, a loss spec (name, dict, text) or a loss expression."""
    if isinstance(obj, nn.Module):
        return obj
    text = expression_text(obj)
    return build_loss_spec(text if text is not None else obj)


def normalise_loss_spec(spec: LossSpec) -> str | dict:
    """The canonical form of a loss spec: the text itself, or the dict with sorted keys (a loss
    expression object, such as a hall-of-fame entry, is its text)."""
    text = expression_text(spec)
    if text is not None:
        return text
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError("empty loss name")
        return spec
    if isinstance(spec, Mapping):
        if "name" not in spec or not isinstance(spec["name"], str):
            raise ValueError(f"loss spec {dict(spec)!r} needs a 'name' (str)")
        return {k: spec[k] for k in sorted(spec)}
    raise TypeError(f"a loss is a name, an expression or a dict with 'name', got {spec!r}")


def normalise_loss_specs(value: Any, field: str = "losses") -> Any:
    """A config field of loss specs: one spec alone is a tuple of one, a list a tuple, each
    spec as :func:`normalise_loss_spec` makes it; a bad one is named ``field[i]``. Anything
    else is returned as it is, for the config's own type check to refuse."""
    if isinstance(value, str | Mapping):
        value = (value,)
    if not isinstance(value, list | tuple):
        return value
    out = []
    for i, spec in enumerate(value):
        try:
            spec = normalise_loss_spec(spec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{field}[{i}]: {exc}") from None
        try:  # built now, so an unknown name, a misspelt or non-finite argument or text that
            build_loss_spec(spec)  # does not parse is refused with the config, before any
        except (TypeError, ValueError, KeyError) as exc:  # folder or row is written
            text = " ".join(str(exc).split())  # one line
            raise ValueError(f"{field}[{i}]={spec!r}: {text}") from None
        out.append(spec)
    return tuple(out)


def loss_specs_field(field: str) -> BeforeValidator:
    """``Annotated[tuple[...], loss_specs_field("losses")]``: the pydantic validator of a config
    field holding loss specs (:func:`normalise_loss_specs`), used by every config with one."""
    return BeforeValidator(functools.partial(normalise_loss_specs, field=field))


def loss_spec_label(spec: LossSpec) -> str:
    """Row label of a loss spec: ``"focal"``, ``"focal(gamma=2)"``, the dict's ``label``, or the text."""
    if isinstance(spec, str):
        return spec
    if "label" in spec:
        return str(spec["label"])
    kw = {k: v for k, v in spec.items() if k not in ("name", "label")}
    if not kw:
        return spec["name"]
    return spec["name"] + "(" + ", ".join(f"{k}={v}" for k, v in sorted(kw.items())) + ")"


def build_loss_spec(spec: LossSpec, **overrides) -> nn.Module:
    """:func:`get_loss` for a loss spec (name, dict with ``name`` + kwargs, or expression text);
    ``overrides`` (e.g. ``validate=False``) win over the spec's own keyword arguments."""
    if isinstance(spec, str) or expression_text(spec) is not None:
        return get_loss(spec, **overrides)
    kw = {k: v for k, v in spec.items() if k not in ("name", "label")}
    return get_loss(spec["name"], **{**kw, **overrides})


def canonical_loss_name(spec: LossSpec) -> str | None:
    """The registered name a loss spec builds (aliases resolved), or None for expression text.

    Keyword arguments count: ``{"name": "focal", "gamma": 2}`` is ``"focal"`` only with its
    defaults, so a dict with any keyword argument (``label`` aside) gives None too.
    """
    if isinstance(spec, Mapping):
        if any(k not in ("name", "label") for k in spec):
            return None
        spec = spec.get("name", "")
    low = str(spec).lower()
    key = _ALIASES.get(low, low)
    return key if key in _REGISTRY else None
