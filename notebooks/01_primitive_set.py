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
# # 01 · The primitive set: what a GP loss is made of
#
# *Next Generation Loss Function for Image Classification* (Akhmedova & Körber, 2024) evolves
# classification losses with genetic programming (GP). A candidate loss is a tree: inner nodes
# are **operators** (+, −, ×, protected ÷, exp, log, sqrt, sin, cos, …), leaves are the
# prediction `y_pred` (softmax probabilities), the target `y_real` (one-hot) and random
# **constants**. The tree is applied element-wise to the `[batch, classes]` matrices and averaged,
# exactly as the paper's winner, the Next Generation Loss (NGL), is:
#
# $$\mathrm{NGL} = \operatorname{mean}_{b,c}\; e^{2.4092 - \hat{y}(1+y)} - \cos(\cos(\sin \hat{y}))$$
#
# This notebook lets you choose the primitive set a search will use, samples random trees from it
# (gplearn's ramped half-and-half initialisation, as the search's first generation does) and plots
# what the losses look like against the true-class probability, with NGL and CE for reference.
#
# **Widgets and saved notebooks.** The widgets of these notebooks (check boxes, buttons, sliders)
# live in the running kernel; their state is not saved in the `.ipynb` (JupyterLab's *Settings >
# Save Widget State Automatically* stays off, and the git filter strips outputs anyway). A notebook
# reopened after its kernel stopped therefore shows "Error displaying widget: model not found"
# where a widget was: run it again (Run > Run All Cells) and they come back. What the widgets
# choose or produce is saved elsewhere: the primitive set in `runs/primitive_set.json`, searches
# and grids in `runs/`, figures and tables in `figures/<notebook>/`.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("NGL_QUICK") == "1"
PRESET = "paper"  # "paper", "gplearn" or "full": the picker's start while nothing is saved yet
N_SAMPLES = 4 if QUICK else 12  # random trees to sample
MAX_DEPTH = 4  # ramped half-and-half depth range is (2, MAX_DEPTH)
NUM_CLASSES = 10  # for the loss-shape plots
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sympy
import torch
from IPython.display import Math, display

import ngl
from ngl import ui
from ngl.gp import LEAVES, OPERATORS
from ngl.io import runs_dir

ngl.setup(seed=SEED, style="paper")

# %% [markdown]
# ## An operator of your own
# `ngl.register_operator` adds an operator with its torch form (training), numpy form (gplearn)
# and sympy form (formulas); the three are checked to agree on fixed arguments, and a wrong one is
# refused. Once registered it is on offer below, in the picker, in sampling and in searches.
# A search's run directory records it, so a search using it is resumed only where the same
# function is registered again (notebook 02 runs in its own kernel: register it there too).

# %%
ngl.register_operator(
    "softplus", 1, torch.nn.functional.softplus, lambda a: np.logaddexp(0.0, a),
    lambda a: sympy.log(1 + sympy.exp(a)), interval=lambda a: (0.0, float("inf")),
    protected=True, description="softplus log(1 + exp(a)) (registered in this notebook)")
example = ngl.LossExpression.parse("softplus(y_pred*y_real) - y_pred*y_real")
display(Math(example.latex()))

# %% [markdown]
# ## The operators and leaves on offer
# Every operator is defined once in `ngl.gp.primitives`, with a torch form (training), a numpy form
# (gplearn) and a sympy form (formulas). Protected operators never produce inf or NaN.

# %%
table = pd.DataFrame(
    [{"name": p.name, "arity": p.arity, "kind": "operator", "meaning": p.description} for p in OPERATORS.values()]
    + [{"name": leaf.name, "arity": 0, "kind": "leaf", "meaning": leaf.description} for leaf in LEAVES.values()]
)
table

# %% [markdown]
# ## Choose the primitive set
# Tick operators and leaves; the preset `paper` holds what the paper names. Every valid choice is
# saved at once to `runs/primitive_set.json`, where notebook 02 picks it up (the line under the
# boxes says so). Running the notebook again starts from the saved choice, so Run All never
# replaces a custom set with `PRESET`; pick a preset in the dropdown to start over.
# (Re-run the cells below after changing the choice.)

# %%
pset_file = runs_dir() / "primitive_set.json"
picker = ui.primitive_set_picker(None if pset_file.exists() else PRESET, n_samples=N_SAMPLES,
                                 seed=SEED, save_to=pset_file)
display(picker.widget)

# %%
pset = picker.value
if pset is None:
    raise ValueError("the picker holds an invalid selection; fix it above and re-run this cell")
print(pset.describe(), "- saved to", pset_file)

# %% [markdown]
# ## Random trees from this set
# The search's first generation looks like this: mostly useless losses. Selection does the rest.

# %%
samples = ngl.sample_expressions(pset, N_SAMPLES, seed=SEED, init_depth=(2, MAX_DEPTH))
for e in samples:
    display(Math(e.latex()))
    print(f"  {e.display()}   size={e.size} depth={e.depth}")

# %%
ncols = min(4, len(samples))
nrows = -(-len(samples) // ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(ui.TEXT_WIDTH, 2.2 * nrows), squeeze=False)
for ax, e in zip(axes.flat, samples, strict=False):
    ui.draw_tree(e, ax=ax)
for ax in axes.flat[len(samples):]:
    ax.axis("off")
ui.save_figure(fig, "random_trees", config={"preset": pset.name, "seed": SEED, "n": N_SAMPLES})
plt.show()

# %% [markdown]
# ## NGL as a tree
# The paper's winner, parsed from text. Its compiled module is exactly `ngl.get_loss("ngl")`.

# %%
ngl_expr = ngl.LossExpression.parse(ngl.NGL_EXPRESSION)
fig = ui.draw_tree(ngl_expr)
ui.save_figure(fig, "ngl_tree")
plt.show()
print(ngl_expr.source())

# %% [markdown]
# ## Loss shapes
# Loss against the true-class probability $p_t$ (the other classes share $1-p_t$ equally), each
# curve rescaled to [0, 1]: NGL's values sit near $e^{2.4} \approx 11$, so raw values must not share
# an axis with CE's. Dots mark each loss's minimum. NGL's minimum is *inside* the interval
# (about 0.39 for 10 classes): it does not push the model to full confidence.

# %%
losses = {"CE": ngl.get_loss("ce"), "NGL": ngl.get_loss("ngl"), "focal (γ=2)": ngl.get_loss("focal"),
          "label smoothing (0.1)": ngl.get_loss("label_smoothing")}
for i, e in enumerate(samples[:3]):
    if "y_pred" in e.leaves:
        losses[f"random #{i}"] = e.to_module()
fig = ui.plot_loss_shapes(losses, num_classes=NUM_CLASSES)
ui.save_figure(fig, "loss_shapes", config={"num_classes": NUM_CLASSES, "losses": list(losses)})
plt.show()

# %%
shape = ui.loss_shape_data({"NGL": ngl.get_loss("ngl")}, num_classes=NUM_CLASSES)
p_opt = shape.loc[shape["loss"].idxmin(), "p_true"]
print(f"NGL's optimum true-class probability for C={NUM_CLASSES}: {p_opt:.3f}")
assert 0.3 < p_opt < 0.5
