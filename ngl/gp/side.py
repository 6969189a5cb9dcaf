"""What a search trains beside its population, never in it: the reference losses (before
generation 0) and the rescoring of the hall of fame's top entries with extra seeds (after the
last). A mixin of :class:`ngl.gp.search.GPSearch`: it uses the search's spec, options, run
directory, executor and stop flag, and writes ``references.jsonl``, ``rescore_plan.json`` and
``rescore.jsonl`` (see :mod:`ngl.gp.rundir`).
"""

from __future__ import annotations

from tqdm.auto import tqdm

from ngl.gp.executors import InProcessExecutor
from ngl.gp.result import load_result
from ngl.gp.rundir import (
    REFERENCES,
    RESCORE,
    RESCORE_PLAN,
    planned_rescores,
    read_rescore_plan,
    reference_rows,
    rescore_ident,
    rescore_rows,
    rescore_seed,
    search_rows,
)
from ngl.gp.worker import evaluate_losses
from ngl.io.records import write_json_atomic
from ngl.losses.registry import loss_spec_label

__all__ = ["SideTrainings", "SIDE_FIELDS"]

SIDE_FIELDS = ("val_accuracy", "val_ce", "status", "steps_done", "train_time_s",
               "final_train_loss", "split")
"""What a reference's or a rescoring's row keeps of its training result."""


class SideTrainings:
    """References and rescoring of a `GPSearch` (its attributes are this mixin's inputs)."""

    def _train_side(self, name: str, todo: list[dict], desc: str) -> None:
        """Train the loss specs of ``todo`` (dicts with ``loss_spec``, ``seed`` and the row's
        identity), chunk by chunk (same seed within a chunk), appending a row per loss to
        ``name`` as each chunk finishes."""
        if not todo:
            return
        spec_dict, options_dict = self.spec.to_dict(), self.options.to_dict()
        size = self.options.chunk_size
        chunks: list[list[dict]] = []
        for seed in dict.fromkeys(t["seed"] for t in todo):  # in order of first appearance
            mine = [t for t in todo if t["seed"] == seed]
            chunks += [mine[k:k + size] for k in range(0, len(mine), size)]
        tasks = [(evaluate_losses, (spec_dict, options_dict, [t["loss_spec"] for t in ch],
                                    ch[0]["seed"])) for ch in chunks]
        bar = tqdm(total=len(todo), desc=desc, leave=False, disable=not self.progress)
        in_process = isinstance(self.executor, InProcessExecutor)
        done = 0
        for chunk, results in zip(chunks, self._run_tasks(tasks, bar.update), strict=False):
            search_rows(self.run_dir, name, self.spec).append(
                [{"run": self.spec.key, **t, **{k: res.get(k) for k in SIDE_FIELDS}}
                 for t, res in zip(chunk, results, strict=True)])
            done += len(chunk)
            if not in_process:
                bar.update(len(chunk))
            if self._stop:
                break
        bar.close()
        if done < len(todo):
            raise KeyboardInterrupt("search stopped on request; resume continues from here")

    def _train_references(self) -> None:
        """Each reference the run directory lacks, with the search's own seed (once per search)."""
        spec = self.spec
        have = {r["loss"] for r in reference_rows(self.run_dir, spec)}
        todo = [{"loss": loss_spec_label(r), "loss_spec": r, "seed": spec.seed}
                for r in spec.references if loss_spec_label(r) not in have]
        self._train_side(REFERENCES, todo, "references")

    def _rescore_plan(self) -> dict:
        """What is rescored, frozen in ``rescore_plan.json`` the first time it is chosen: the
        hall of fame's top ``spec.rescore`` entries (the search's own ranking; with successive
        halving, among those that reached the last rung), every reference, and the extra seeds
        ``rescore_seed(spec.seed, j)`` for j = 1..rescore_seeds."""
        spec = self.spec
        plan = read_rescore_plan(self.run_dir, spec)
        if plan is not None:
            return plan
        ranking = load_result(self.run_dir)._search_ranking()
        if spec.halving is not None and len(ranking):
            # only entries scored at the search's fidelity (the last rung): their own score is
            # then one seed of the same measurement as the rescoring's
            ranking = ranking[ranking["rung"] == spec.halving.rungs - 1]
        top = ranking.head(spec.rescore)
        plan = {
            "run": spec.key, "rescore": spec.rescore,
            "seeds": [rescore_seed(spec.seed, j) for j in range(1, spec.rescore_seeds + 1)],
            "candidates": [{"key": r["key"], "expression": r["expression"],
                            "fingerprint": r["fingerprint"],
                            "val_accuracy": float(r["val_accuracy"]),
                            "generation": int(r["generation"]), "size": int(r["size"])}
                           for _, r in top.iterrows()],
            "references": [{"loss": loss_spec_label(r), "loss_spec": r} for r in spec.references],
        }
        write_json_atomic(self.run_dir / RESCORE_PLAN, plan, sealed=True)
        return plan

    def _rescore(self) -> None:
        """Retrain what the plan names with each extra seed; rows already there are kept."""
        if self.spec.rescore == 0:
            return
        plan = self._rescore_plan()
        have = {rescore_ident(r) for r in rescore_rows(self.run_dir, self.spec)}
        todo = [t for t in planned_rescores(plan) if rescore_ident(t) not in have]
        self._train_side(RESCORE, todo, "rescoring")
