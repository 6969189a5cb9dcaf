"""What a search is (:class:`SearchSpec`, hashed to name its run directory) and how it is run
(:class:`RunOptions`: device, chunk size, CUDA graphs, data folder; not part of the hash).

Both are strict pydantic configs (:mod:`ngl.io.config`): unknown fields and wrong types are
refused with the field, the value and what is expected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ngl.data import available_datasets
from ngl.fitness import SuccessiveHalving, TrainBudget
from ngl.fitness.budget import DEFAULT_BRACKET
from ngl.gp.expression import LossExpression
from ngl.gp.parse import MAX_DEPTH, MAX_SIZE
from ngl.gp.primitives import PrimitiveSet, preset
from ngl.io.config import STRICT, AsTuple, ConfigError, ConfigMixin, check_device, resolve_device
from ngl.losses.registry import build_loss_spec, loss_spec_label, loss_specs_field
from ngl.models import available_models

__all__ = ["SearchSpec", "RunOptions", "primitive_set_from", "SPEC_FIELDS", "OPTION_FIELDS",
           "OPTION_HELP"]


def primitive_set_from(value: Any) -> PrimitiveSet:
    """A PrimitiveSet, a preset name, or the dict that ``PrimitiveSet.to_dict`` writes."""
    if isinstance(value, PrimitiveSet):
        return value
    if isinstance(value, str):
        return preset(value)
    if isinstance(value, dict):
        return PrimitiveSet.from_dict(value)
    raise ValueError(f"expected a PrimitiveSet, a preset name or its dict, got {value!r}")



Probability = Annotated[float, Field(ge=0, le=1)]

_OFF: dict[str, Any] = {"halving": None, "references": [], "rescore": 0, "rescore_seeds": 2}
"""Fields added after the first release, with the value a spec written before them reads as."""


@pydantic_dataclass(frozen=True, config=STRICT)
class SearchSpec(ConfigMixin):
    """Everything that determines a search's result; its hash names the run directory.

    How the search is run (device, chunk size, CUDA graphs, where the data lives, how many
    hall-of-fame entries to show) is in :class:`RunOptions`, so changing it resumes the same
    search instead of silently starting another.

    ``seed`` drives the GP (initial trees, selection, variation) and the training of every
    candidate (initial weights, batches); ``data_seed`` alone draws the search-train /
    search-validation split, so changing the GP seed never changes the data.

    ``halving`` (a :class:`~ngl.fitness.SuccessiveHalving`) stops most candidates of each
    ``halving.bracket`` early: rungs at 1/eta^k of ``budget.steps``, the best ``ceil(n/eta)`` go on. Selection,
    elitism and the hall of fame then rank a candidate by the rung it reached, then by its
    fitness there (the successive-halving rule), and a cache hit takes over the cached
    candidate's rung and score.

    ``references`` are losses trained once per search, outside the population, under the
    search's own budget, split and common random numbers: a registered name (``"ce"``), a dict
    ``{"name": "focal", "gamma": 2, "label": "focal2"}`` or loss-expression text. They never
    enter selection, the cache, the hall of fame or the history (``references.jsonl``); the
    hall of fame gives each entry's accuracy minus the CE reference's (``delta_ce``).

    ``rescore`` (the winner's curse): after the last generation the hall of fame's top
    ``rescore`` entries and every reference are retrained with ``rescore_seeds`` other seeds
    (other initial weights and batch order, the same split; ``rescore.jsonl``), and the hall of
    fame ranks those entries by their mean over all seeds (the search's own score is one).
    Selection during the search is unchanged. ``rescore=0`` turns it off.
    """

    primitive_set: Annotated[PrimitiveSet, PlainValidator(primitive_set_from),
                             PlainSerializer(lambda p: p.to_dict())] = field(
        default_factory=lambda: preset("paper"))
    population_size: Annotated[int, Field(ge=2, le=100_000)] = 16
    generations: Annotated[int, Field(ge=1, le=100_000)] = 5
    # numpy and scikit-learn take seeds below 2**32
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    data_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    # variation (the rest of the probability mass is plain reproduction)
    p_crossover: Probability = 0.7
    p_subtree_mutation: Probability = 0.1
    p_hoist_mutation: Probability = 0.05
    p_point_mutation: Probability = 0.1
    p_point_replace: Probability = 0.05
    tournament_size: Annotated[int, Field(ge=1, le=100_000)] = 3
    elitism: Annotated[int, Field(ge=0, le=100_000)] = 1
    parsimony_coefficient: Annotated[float, Field(ge=0, le=1)] = 0.001
    init_depth: Annotated[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]],
                          AsTuple] = (2, 4)
    # stored populations are re-parsed: limits beyond the parser's would make them unreadable
    max_depth: Annotated[int, Field(ge=1, le=MAX_DEPTH)] = 8
    max_size: Annotated[int, Field(ge=1, le=MAX_SIZE)] = 40
    seed_expressions: Annotated[tuple[str, ...], AsTuple] = ()
    # fitness
    dataset: str = "digits"
    n_train: Annotated[int, Field(ge=1, le=10**9)] | None = None
    n_val: Annotated[int, Field(ge=1, le=10**9)] | None = None
    # the calibrated fitness (findings/calibration): dense_cnn, 100 Adam steps annealed by cosine
    # ranks losses as full training does (Spearman 0.95 on Fashion-MNIST, 0.99 on digits); the
    # former small_cnn at a constant rate did not (0.34 and 0.69)
    model: str = "dense_cnn"
    budget: TrainBudget = field(default_factory=lambda: TrainBudget(steps=100, batch_size=128,
                                                                    schedule="cosine"))
    # successive halving in brackets of halving.bracket candidates (None: every candidate
    # trains the whole budget)
    halving: SuccessiveHalving | None = None
    # sanity filter and equivalence cache
    probe_size: Annotated[int, Field(ge=1, le=100_000)] = 64
    equivalence: Literal["value_and_gradient", "gradient", "none"] = "value_and_gradient"
    # losses trained beside the search (never in it), and the top k retrained with other seeds
    references: Annotated[tuple[str | dict[str, Any], ...],
                          loss_specs_field("references")] = ("ce",)
    rescore: Annotated[int, Field(ge=0, le=10_000)] = 3
    rescore_seeds: Annotated[int, Field(ge=1, le=1_000)] = 2

    def __hash__(self) -> int:  # dict reference specs are not hashable: hash the canonical JSON
        return hash(self.key)

    def __post_init__(self) -> None:
        if self.elitism >= self.population_size:
            raise ValueError(f"elitism={self.elitism}: expected 0 <= elitism < "
                             f"population_size ({self.population_size})")
        probs = [self.p_crossover, self.p_subtree_mutation, self.p_hoist_mutation,
                 self.p_point_mutation]
        if sum(probs) > 1 + 1e-9:
            raise ValueError(f"variation probabilities (p_crossover, p_subtree_mutation, "
                             f"p_hoist_mutation, p_point_mutation) sum to {sum(probs):.3f}; "
                             "expected <= 1")
        lo, hi = self.init_depth
        if not lo <= hi <= self.max_depth:
            raise ValueError(f"init_depth={list(self.init_depth)}: expected "
                             f"1 <= low <= high <= max_depth ({self.max_depth})")
        if self.dataset not in available_datasets():
            raise ValueError(f"dataset={self.dataset!r}: expected one of "
                             f"{available_datasets()}")
        if self.model not in available_models():
            raise ValueError(f"model={self.model!r}: expected one of "
                             f"{available_models()[:8]}...")
        if self.halving is not None:
            self.halving.check(self.budget.steps, "halving")
        for i, text in enumerate(self.seed_expressions):
            try:
                LossExpression.parse(text, self.primitive_set)
            except ValueError as exc:  # the parser's message says where in the text
                raise ValueError(f"seed_expressions[{i}]: {exc}") from None
        for i, ref in enumerate(self.references):
            try:  # built here, so a misspelt name is refused before a run directory exists
                build_loss_spec(ref)
            except (TypeError, ValueError) as exc:
                text = " ".join(str(exc).split())  # one line
                raise ValueError(f"references[{i}]={ref!r}: {text}") from None
        labels = [loss_spec_label(r) for r in self.references]
        if len(set(labels)) != len(labels):
            raise ValueError(f"references: labels must be unique, got {labels}; give a dict "
                             "spec a 'label'")

    @property
    def key(self) -> str:
        """As for every config, but a field added since the first release is left out while
        it has the value that means "off" (``halving=None``, ``references=()``, ``rescore=0``,
        ``budget.schedule="constant"``, ``halving.bracket=16``), so older run directories keep their key and are still
        found and continued."""
        return self.digest[:12]

    @property
    def digest(self) -> str:
        """The full SHA-256 of :meth:`key_dict`; ``key`` is its first 12 hex digits."""
        text = json.dumps(self.key_dict(), sort_keys=True, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def key_dict(self, *, fitness_only: bool = False) -> dict[str, Any]:
        """What :attr:`key` hashes. ``fitness_only`` also leaves out what only the end of a
        search uses (``references``, ``rescore``, ``rescore_seeds``): what a constant tuning
        run built on this spec depends on."""
        d = self.to_dict()
        for name, off in _OFF.items():
            if fitness_only:  # tuning keys always held halving, never the later fields
                if name != "halving":
                    del d[name]
            elif d[name] == off:
                del d[name]
        if d["budget"].get("schedule") == "constant":
            del d["budget"]["schedule"]
        if isinstance(d.get("halving"), dict) and d["halving"].get("bracket") == DEFAULT_BRACKET:
            del d["halving"]["bracket"]  # what every halving search used before the field
        return d


@pydantic_dataclass(frozen=True, config=STRICT)
class RunOptions(ConfigMixin):
    """How a search runs; none of it changes which losses it finds.

    ``chunk_size`` is the number of candidates handed to one worker at once (the unit of
    resume; with successive halving the spec's ``halving.bracket`` is the chunk instead, so
    the chunk size cannot change which candidates survive); ``cuda_graph`` replays each training step as a CUDA graph (CUDA only);
    ``compile`` compiles the folded population network with ``torch.compile`` once per
    population size and worker process (it pays on long searches only: see the README);
    ``data_root`` is where the dataset's files are (``None``: the usual places).
    Within a chunk, candidates train in passes; which candidates share a pass can change the
    last float32 bits of a fitness (about 1e-7 relative), never the data, seeds or budget.
    """

    device: str = "auto"
    chunk_size: Annotated[int, Field(ge=1, le=100_000)] = 16
    cuda_graph: bool = False
    compile: bool = False
    data_root: str | None = None
    hall_of_fame_size: Annotated[int, Field(ge=1, le=100_000)] = 10

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.cuda_graph and self.device == "cpu":
            raise ValueError("cuda_graph=True needs a CUDA device, got device='cpu'")
        if self.cuda_graph and self.compile:
            raise ValueError("compile=True and cuda_graph=True do not combine; pick one")

    def resolved_device(self) -> str:
        """``auto`` made concrete: CUDA when this machine has it, else CPU."""
        return resolve_device(self.device)

    def replaced(self, **given: Any) -> RunOptions:
        """These options with the ``given`` ones (``None``: keep this one) replaced, validated
        as a whole; an unknown name is refused in one line that lists the options."""
        unknown = sorted(set(given) - set(OPTION_FIELDS))
        if unknown:
            raise ConfigError(f"run option(s) {unknown}: expected one of {list(OPTION_FIELDS)}")
        given = {k: v for k, v in given.items() if v is not None}
        return RunOptions.from_dict({**self.to_dict(), **given}) if given else self


SPEC_FIELDS = tuple(SearchSpec.__dataclass_fields__)
OPTION_FIELDS = tuple(RunOptions.__dataclass_fields__)

OPTION_HELP: dict[str, str] = {
    "device": "auto, cpu, cuda or cuda:N",
    "chunk_size": "candidates per worker task (the unit of resume)",
    "cuda_graph": "replay each training step as a CUDA graph (CUDA only)",
    "compile": "torch.compile the folded batched network (models without dropout, such as "
               "small_cnn; the default dense_cnn is not folded, so there it changes nothing); "
               "about 30 s to compile on a CPU, so only for long searches; not with cuda_graph",
    "data_root": "folder holding the dataset's files",
    "hall_of_fame_size": "entries of the hall of fame shown and kept by ngl.load",
}
"""One line per `RunOptions` field: the command line's ``--help`` (one flag per field)."""
