# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
# ---

# %% [markdown]
# # 03 · Trees and fitness: what the search found, and why
#
# The paper's search is a genetic program: a population of loss trees, each scored by training a
# network with it and measuring validation accuracy (the **fitness**), the better ones recombined
# and mutated into the next generation. Its fifth run produced the Next Generation Loss (NGL). This
# notebook reads a finished (or partial) search from disk and looks at it from three sides:
#
# 1. **Fitness over generations**: does the population improve, or does one lucky tree carry it?
# 2. **The trees themselves**: the hall of fame as expression trees and formulas.
# 3. **Loss shapes**: what the best found losses do to the true-class probability, next to NGL,
#    cross entropy (CE) and focal loss.
#
# It starts with the latest search under `runs/search/` (the one notebook 02 made) and says which
# one it is; the list under "Load the search" offers every other run. When there is none, for
# example when this notebook runs alone, it runs a tiny search first so that every cell works.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("NGL_QUICK") == "1"
SEARCH_DIR = None  # a run directory such as "runs/search/<key>"; None: the latest one
TOP_K = 4 if QUICK else 8  # hall-of-fame trees to draw
COMPARE = 3  # the latest searches to compare side by side (0: none)
NUM_CLASSES = 10  # for the loss-shape plots
SEED = 0

# %%

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Math, display

import ngl
from ngl import ui

ngl.setup(seed=SEED, style="paper")

# %% [markdown]
# ## Load the search
# A search directory holds `spec.json` (everything that determines the result; the directory is
# named by its hash), `options.json` (how it was run), `history.jsonl` (one row per evaluated
# candidate, appended as the search goes) and `checkpoint.json` (population and random state
# after the last finished generation). `ngl.load` needs only the spec and the history; a partial
# run is fine.
#
# **Which search?** The list holds every run under `runs/search/`, the latest first, with its key
# and what it searched. Choose another, then re-run the cells from the next one down
# (Run > Run Selected Cell and All Below): every table and figure below shows the chosen run,
# and the figures' sidecars name its key.

# %%
picker = ui.search_picker(SEARCH_DIR, quick=QUICK, seed=SEED)
display(picker.widget)

# %%
search_dir = picker.shown()
result = ngl.load(search_dir)
config = result.spec
print(f"{search_dir}\n{len(result.history)} candidates, {config.generations} generations planned, "
      f"complete: {result.complete}; dataset {config.dataset}, model {config.model}, "
      f"{config.budget.steps} training steps per candidate")
fig_config = {"search": config.key, "dataset": config.dataset, "population": config.population_size}

# %% [markdown]
# ## Fitness over generations
# The left panel is the paper's objective: validation accuracy of the network trained with each
# candidate. The band spans the middle half of the population (25%-75% quantiles), the upper line
# is the best candidate. A rising median means the population as a whole learns what a good loss
# looks like; a flat median under a rising best means a few elite trees carry the search.
# The middle panel tracks **diversity** (distinct functions, after the equivalence check merged
# losses that compute the same thing) and **tree size** (bloat: GP trees tend to grow without
# getting better, which the parsimony pressure in the fitness counters). The right panel counts
# the candidates that never needed training: those the **sanity filter** rejected (constant,
# non-finite, blind to the prediction, or pushing the true class down) and the **cache hits**
# (a functionally equal loss was trained before).

# %%
summary = result.generation_summary()
summary[["generation", "candidates", "best", "median", "q25", "q75", "distinct_functions",
         "mean_size", "rejected", "cache_hits", "trained"]].round(4)

# %%
fig = ui.plot_search_progress(summary)
ui.save_figure(fig, "fitness_curve", config=fig_config)
plt.show()

# %% [markdown]
# Every candidate as a point: fitness against tree size, coloured by generation. The paper's NGL
# is a small tree (size 13); a good loss does not need to be large.

# %%
ok = result.history[result.history["status"] == "ok"]
fig, ax = plt.subplots(figsize=(ui.COLUMN_WIDTH, 2.4))
points = ax.scatter(ok["size"], ok["val_accuracy"], c=ok["generation"], s=12, cmap="viridis")
fig.colorbar(points, ax=ax, label="generation")
ax.set(xlabel="tree size (nodes)", ylabel="validation accuracy")
ui.save_figure(fig, "fitness_vs_size", config=fig_config)
plt.show()

# %% [markdown]
# The Pareto front (PySR's view of a search): each distinct trained loss by size and accuracy;
# the marked losses are those no smaller-or-equal tree beats. A loss off the front has a smaller
# rival that scores at least as well.

# %%
front = result.pareto()
fig = ui.plot_pareto(front)
ui.save_figure(fig, "pareto_front", config=fig_config)
plt.show()
front[front["on_front"]][["size", "val_accuracy", "generation", "expression"]]

# %% [markdown]
# ## Comparing searches
# The latest searches under `runs/search/` side by side (another seed, budget or primitive set):
# each is named once in the legend, its references dashed in its colour.

# %%
others = ui.search_runs()[:COMPARE]
if search_dir not in others:
    others = [search_dir, *others][:COMPARE]
if len(others) >= 2:
    compared = ngl.compare(others)
    fig = ui.plot_compare(compared)
    ui.save_figure(fig, "search_comparison", config=fig_config)
    plt.show()
else:
    print("one search so far: run another (notebook 02, another seed) to compare")

# %% [markdown]
# Why candidates were rejected before training, per generation:

# %%
result.history.pivot_table(index="generation", columns="status", values="key", aggfunc="count",
                           fill_value=0)

# %% [markdown]
# ## The hall of fame
# The best distinct losses of the whole search (equivalent losses count once; ties go to the
# smaller tree). `origin` says how each was born: from the initial random population, seeded
# (NGL as a yardstick), kept as elite, or by crossover / mutation.
# `formula` is the readable form (4 significant digits); `hof["expression"]` holds the exact,
# stored text the search hashed.

# %%
hof = result.hall_of_fame()
hof[["val_accuracy", "val_ce", "size", "depth", "generation", "origin", "formula"]]

# %% [markdown]
# Where the best loss came from: its ancestors through the stored parents, the operation that made
# each (`origin`) and its score.

# %%
lineage = result.lineage()
lineage.assign(formula=[ngl.LossExpression.parse(e).tidy() for e in lineage["expression"]])[
    ["depth", "generation", "origin", "val_accuracy", "formula"]]

# %% [markdown]
# As trees: inner nodes are operators, leaves are the prediction `y_pred` (blue), the one-hot
# target `y_real` (green) and constants (grey). The formula above each tree is its LaTeX form.

# %%
top = hof.head(TOP_K)
if len(top):
    cols = min(2, len(top))
    rows = int(np.ceil(len(top) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(ui.TEXT_WIDTH, 2.3 * rows), squeeze=False)
    for ax, row in zip(axes.flat, top.itertuples(), strict=False):
        ui.draw_tree(row.expression, ax=ax)
        ax.set_title(f"#{row.Index + 1}  acc {row.val_accuracy:.3f}\n" + ax.get_title(), fontsize=7)
    for ax in list(axes.flat)[len(top):]:
        ax.axis("off")
    ui.save_figure(fig, "hall_of_fame_trees", config=fig_config)
    plt.show()
    for row in top.itertuples():
        display(Math(rf"\#{row.Index + 1}:\quad " + ngl.LossExpression.parse(row.expression).latex()))
else:
    print("no candidate trained successfully yet")

# %% [markdown]
# ## Loss shapes: what the best losses ask of the network
# Each loss is evaluated along one path: the true class gets probability $p_t$, the other classes
# share the rest. Values are rescaled to $[0, 1]$ per loss (NGL's values sit near $e^{2.4}
# \approx 11$, CE's near 0, so raw values must not share an axis); the dot marks each loss's
# optimum. CE and focal loss push $p_t$ to 1; NGL has an interior optimum (about 0.39 for
# $C = 10$), the "controlled confidence" that distinguishes it. The right panel shows the slope:
# where it is negative, the loss still pushes the true class up.

# %%
shape_losses = {f"#{i + 1}": ngl.LossExpression.parse(t).to_module(validate=False)
                for i, t in enumerate(hof["expression"].head(3))}
shape_losses.update({"NGL": ngl.get_loss("ngl"), "CE": ngl.get_loss("ce"),
                     "focal (γ=2)": ngl.get_loss("focal", gamma=2.0)})
fig = ui.plot_loss_shapes(shape_losses, num_classes=NUM_CLASSES)
ui.save_figure(fig, "loss_shapes_best", config={**fig_config, "num_classes": NUM_CLASSES})
plt.show()

shapes = ui.loss_shape_data(shape_losses, num_classes=NUM_CLASSES)
optima = shapes.loc[shapes.groupby("loss_name", sort=False)["loss"].idxmin(), ["loss_name", "p_true"]]
optima.rename(columns={"p_true": "optimal p_true"}).set_index("loss_name").round(3)

# %% [markdown]
# ## Browse the hall of fame
# Choose a candidate: its tree, formula and loss shape next to NGL and CE. (Widgets need a running
# kernel; in a static copy of this notebook only the figures above remain.)

# %%
browser = ui.hall_of_fame_browser(result, num_classes=NUM_CLASSES)
browser.widget

# %% [markdown]
# ## Explore the constants
# NGL's constant $\alpha = 2.4092$ came out of the search. Since $e^{\alpha - p(1+y)} =
# e^{\alpha}\,e^{-p(1+y)}$, $\alpha$ only sets the weight of the exponential term against the
# $\cos(\cos(\sin p))$ term. Move it: for $C = 10$ the optimum sits near $p_t = 0.55$ at
# $\alpha = 0$, 0.42 at $\alpha = 1$, 0.39 at the paper's value and 0.38 at $\alpha = 5$, where the
# exponential term alone decides; the interior optimum comes from the exponential itself, the
# constant only fine-tunes it. Compare with focal $\gamma$ and label smoothing $\varepsilon$, the
# hand-made ways to temper confidence. Type a hall-of-fame formula into the expression box to add it.

# %%
explorer = ui.loss_explorer(num_classes=NUM_CLASSES, expression=hof["expression"].iloc[0] if len(hof) else "")
explorer.widget

# %% [markdown]
# The figures of this notebook are in `figures/03_trees_and_fitness/` as PDF (vector, fonts
# embedded) and 300 dpi PNG, each with a JSON sidecar naming the search it came from.
