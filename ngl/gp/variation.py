"""How a generation becomes the next: gplearn's variation on loss expressions.

Ramped half-and-half initialisation (after the spec's seed expressions), tournament selection,
elitism (distinct functions only), subtree crossover, subtree / hoist / point mutation and
reproduction with the spec's probabilities; a child over the depth or size limit is replaced by
a copy of its parent. Every draw comes from the one ``rng`` the search checkpoints, in a fixed
order, so a resumed search draws the same populations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ngl.gp.expression import LossExpression
from ngl.gp.spec import SearchSpec

__all__ = ["Variation", "selection_scores", "RUNG_WEIGHT"]

RUNG_WEIGHT = 3.0
"""Fitness lies in [-1, 1] (accuracy minus parsimony; -1 for rejects), so adding 3 per rung
reached orders candidates by rung first, then by fitness, in one float."""


def selection_scores(rows: Sequence[dict], spec: SearchSpec) -> np.ndarray:
    """What tournaments and elitism compare: the fitness, and with successive halving the rung
    reached first (a candidate stopped early lost, at that rung, to every one that went on).

    Without halving this is the fitness itself. A rejected candidate (no rung) counts as
    stopped at the first rung; its fitness of -1 puts it last there.
    """
    fitness = np.array([r["fitness"] for r in rows], dtype=float)
    if spec.halving is None:
        return fitness
    rung = np.array([r.get("rung") or 0 for r in rows], dtype=float)
    return fitness + RUNG_WEIGHT * rung


class Variation:
    """The population moves of the search ``spec`` (its primitive set, limits, probabilities)."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec
        self.pset = spec.primitive_set

    def initial_population(self, rng: np.random.RandomState) -> list[tuple[str, str, list[str]]]:
        pop: list[tuple[str, str, list[str]]] = []
        for text in self.spec.seed_expressions[: self.spec.population_size]:
            pop.append((str(LossExpression.parse(text, self.pset)), "seed", []))
        while len(pop) < self.spec.population_size:
            prog = self.pset.random_program(rng, self.spec.init_depth)
            expr = LossExpression.from_program(prog, self.pset)
            pop.append((str(expr), "init", []))
        return pop

    def programs(self, texts: Sequence[str]) -> list:
        spec = self.spec
        return [LossExpression.parse(t).to_program(self.pset, init_depth=spec.init_depth,
                                                   p_point_replace=spec.p_point_replace)
                for t in texts]

    def tournament(self, scores: np.ndarray, rng: np.random.RandomState) -> int:
        contenders = rng.randint(0, len(scores), self.spec.tournament_size)
        return int(contenders[np.argmax(scores[contenders])])

    def next_population(self, texts: list[str], scores: np.ndarray,
                         rng: np.random.RandomState) -> list[tuple[str, str, list[str]]]:
        spec = self.spec
        programs = self.programs(texts)
        keys = [LossExpression.parse(t).key for t in texts]
        new: list[tuple[str, str, list[str]]] = []
        seen: set[str] = set()
        for i in np.argsort(-scores, kind="stable"):
            if len(new) >= spec.elitism:
                break
            if keys[i] not in seen and np.isfinite(scores[i]) and scores[i] > -1:
                new.append((texts[i], "elite", [keys[i]]))
                seen.add(keys[i])
        cuts = np.cumsum([spec.p_crossover, spec.p_subtree_mutation, spec.p_hoist_mutation,
                          spec.p_point_mutation])
        while len(new) < spec.population_size:
            parent = self.tournament(scores, rng)
            prog = programs[parent]
            parents = [keys[parent]]
            method = rng.uniform()
            if method < cuts[0]:
                donor = self.tournament(scores, rng)
                child, _, _ = prog.crossover(programs[donor].program, rng)
                origin = "crossover"
                parents.append(keys[donor])
            elif method < cuts[1]:
                child, _, _ = prog.subtree_mutation(rng)
                origin = "subtree_mutation"
            elif method < cuts[2]:
                child, _ = prog.hoist_mutation(rng)
                origin = "hoist_mutation"
            elif method < cuts[3]:
                child, _ = prog.point_mutation(rng)
                origin = "point_mutation"
            else:
                child, origin = prog.reproduce(), "reproduction"
            expr = LossExpression.from_program(child, self.pset)
            if expr.depth > spec.max_depth or expr.size > spec.max_size:
                # the child is discarded: what enters the population is a copy of the parent
                expr, origin = LossExpression.from_program(prog, self.pset), "reproduction"
                parents = [keys[parent]]
            new.append((str(expr), origin, parents))
        return new
