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
# # 02 · The GP loss search
#
# The paper scores a candidate loss by training a network with it and measuring validation
# accuracy, then breeds the better losses (tournament selection, subtree crossover, mutation).
# Here every candidate of the search starts from the **same initial weights** and sees the **same
# batches**, so differences in fitness come from the loss alone. Before any training, a sanity
# filter rejects losses that cannot train (constant, non-finite, independent of the prediction,
# or pushing the true class *down* near an uninformed prediction) and an equivalence cache trains
# functionally identical losses once. The candidates of a generation are trained together as one
# batched network.
#
# The search runs in the background, driven by a panel with **start / stop / resume** buttons, so
# the kernel stays free while it trains. It writes one row per candidate to
# `runs/search/<key>/history.jsonl` as it goes and checkpoints after every chunk of candidates:
# stop it (or kill the kernel) at any time and resume continues where it stopped. The same seed
# gives the same history.
#
# **Three splits, never mixed.** The search trains every candidate on the *search-train* split
# and scores it (its fitness) on the *search-validation* split: both are drawn from the dataset's
# training data with `data_seed` (`n_train` / `n_val` examples of it). The dataset's *test* split
# (Fashion-MNIST: the official 10,000 test images; digits: a fixed, stratified 20 %) is never
# touched by the search: every history row says `split: search_validation`. A fitness is
# therefore a *selection* score, optimistic for the losses it selected; the number to report
# comes from notebook 06 (`python -m ngl validate RUN_DIR`), which retrains the found losses at
# full fidelity over several seeds and scores them on the held-out test split.
#
# Quick mode: a small population on the embedded digits data, a few minutes on a laptop CPU.
# Full mode (`NGL_QUICK=0`, a GPU): larger population and budget on Fashion-MNIST; the paper
# searched on CIFAR-10/100 and Fashion-MNIST with InceptionV3. Long runs are better started from
# a terminal: `python -m ngl search --spec spec.json` (same engine, same run directory).

# %% tags=["parameters"]
import os

QUICK = os.environ.get("NGL_QUICK") == "1"
DATASET = "digits" if QUICK else "fashion_mnist"
MODEL = "dense_cnn"  # the calibrated fitness (README, "Can the fitness be trusted?")
POPULATION = 8 if QUICK else 64
GENERATIONS = 3 if QUICK else 20
TRAIN_STEPS = 40 if QUICK else 100
SCHEDULE = "cosine"  # learning rate annealed to 0 over TRAIN_STEPS: part of the calibrated fitness
N_TRAIN = None if QUICK else 12000  # None: the whole training split
N_VAL = None if QUICK else 3000
DEVICE = "auto"
CUDA_GRAPH = not QUICK  # on a GPU, replay each training step as a CUDA graph (much faster)
SEED = 0
SEED_WITH_NGL = True  # put the paper's NGL into generation 0, as a yardstick
FRESH = False  # True: delete an earlier run of the same configuration first
AUTOSTART = True  # start the search when its panel is shown (Run All works unattended)
CHUNK_SIZE = 4 if QUICK else 16  # candidates per checkpoint: the granularity of stop and resume
CALIBRATE = True  # measure first whether this fitness ranks losses as full training does
CALIBRATION_TREES = 2 if QUICK else 6  # random trees in the calibration panel
TARGET_EPOCHS = 3 if QUICK else 4  # the target: dense_cnn trained as notebook 06 trains it

# %%
import shutil

import matplotlib.pyplot as plt
from IPython.display import Math, display

import ngl
from ngl import ui
from ngl.io import runs_dir

ngl.setup(seed=SEED, style="paper")

# %% [markdown]
# ## Configuration
# The primitive set comes from notebook 01 (`runs/primitive_set.json`) when it was run, else the
# `paper` preset. The form below starts from the parameters cell; change it and re-run the cells
# after it.

# %%
pset_file = runs_dir() / "primitive_set.json"
pset = ngl.PrimitiveSet.load(pset_file) if pset_file.exists() else ngl.preset("paper")
print(pset.describe(), "(from notebook 01)" if pset_file.exists() else "(preset)")

ngl_text = ngl.NGL_EXPRESSION
seeds = (ngl_text,) if SEED_WITH_NGL and {"exp", "sub", "mul", "add", "cos", "sin"} <= set(pset.operators) else ()
base = ngl.SearchSpec(primitive_set=pset, population_size=POPULATION, generations=GENERATIONS,
                      dataset=DATASET, model=MODEL, n_train=N_TRAIN, n_val=N_VAL,
                      seed=SEED, seed_expressions=seeds, elitism=1,
                      budget=ngl.TrainBudget(steps=TRAIN_STEPS, batch_size=128, lr=1e-3,
                                             optimizer="adam", schedule=SCHEDULE))
form = ui.search_spec_form(base)
display(form.widget)

# %%
spec = form.value
print(spec.to_json()[:600], "...")
search_dir = runs_dir() / "search" / spec.key
if FRESH and search_dir.exists():
    shutil.rmtree(search_dir)

# %% [markdown]
# ## Can this fitness be trusted?
# A fitness is a *proxy*: a small network trained briefly. It is worth only as much as it orders
# losses the way full training does. Before spending hours on a search, train a panel of known
# losses (CE, NGL, focal, SCE, squared and absolute error, a few random trees) under this
# search's fitness and under the **target** -- `dense_cnn` trained for `TARGET_EPOCHS` epochs on
# the whole training split, as notebook 06 retrains a finding -- both scored on the same
# search-validation images (the test split stays untouched), and compare the two orders.
# A second proxy, the uncalibrated fitness ngl used before (`small_cnn` at a constant learning
# rate, the same steps), shows what a fitness that does not hold looks like. The committed calibrations for digits and Fashion-MNIST
# (`findings/calibration/`, `python -m ngl calibrate`) are the full-size version of this cell;
# the default fitness of `ngl.SearchSpec` was chosen from them.

# %%
if CALIBRATE:
    from IPython.display import Markdown

    from ngl.evaluate import proxy_calibration as pc

    alternative = pc.Proxy(name=f"small_cnn {spec.budget.steps}", model="small_cnn",
                           n_train=spec.n_train,
                           budget=ngl.TrainBudget(steps=spec.budget.steps, batch_size=128))
    calib_config = pc.config_for(
        spec, references=("ce", "ngl", {"name": "focal", "gamma": 2.0}, "sce"),
        random_trees=CALIBRATION_TREES, proxies=(pc.proxy_of(spec), alternative),
        target_train=ngl.TrainConfig(epochs=TARGET_EPOCHS, batch_size=128, schedule="cosine"))
    calibration = ngl.calibrate(calib_config, device=DEVICE)
    display(Markdown(calibration.to_markdown()))
    for name, plot in (("calibration_cost", ui.plot_calibration_cost),
                       ("calibration_scatter", ui.plot_calibration_scatter)):
        fig = plot(calibration)
        ui.save_figure(fig, name, config=calib_config.to_dict())
        plt.show()

# %% [markdown]
# ## Run (or continue) the search
# The panel runs the search in a background thread: **start** runs (or continues) it, **stop**
# ends it after the chunk in progress (everything finished is kept), **resume** continues a stopped
# run from its checkpoint. The figure under the buttons grows with every generation, and the
# kernel stays free meanwhile: you can run other cells. With `AUTOSTART` it starts by itself.
#
# The cell after the panel waits for the search to end, because the cells below need its
# result; while it waits the kernel is busy (the buttons answer again when it returns).
# Interrupting the kernel there stops the search ("stopped - run again to resume"); re-run the
# panel's cell, or press resume, to continue.
#
# *Alternative (blocking):* `ngl.search(spec, search_dir, chunk_size=CHUNK_SIZE,
# callback=ui.LivePlot())` runs the same search in the cell itself, with a progress bar per
# candidate and the same live figure; interrupting the kernel stops it the same way.

# %%
# how it runs (device, chunk size, CUDA graphs) is not part of the spec: changing it resumes
options = ngl.RunOptions(device=DEVICE, chunk_size=CHUNK_SIZE, cuda_graph=CUDA_GRAPH)
runner = ui.search_runner(spec, search_dir, options)
display(runner.widget)
if AUTOSTART:
    runner.start()

# %%
result = runner.wait()
print(f"{len(result.history)} candidates evaluated; complete: {result.complete}")

# %% [markdown]
# ## What happened per generation

# %%
summary = result.generation_summary()
summary

# %%
fig = ui.plot_search_progress(summary)
ui.save_figure(fig, "fitness_curve", config={"key": spec.key, "dataset": spec.dataset,
                                             "population": spec.population_size})
plt.show()

# %% [markdown]
# ## Hall of fame
# The best distinct losses (equivalent losses count once), with how they were born. `formula` is
# the readable form (4 significant digits); `hof["expression"]` holds the exact, stored text.

# %%
hof = result.hall_of_fame()
hof[["val_accuracy", "val_ce", "size", "generation", "origin", "formula"]]

# %%
best = result.best
display(Math(best.latex()))
print("best:", best)
fig = ui.draw_tree(best.expression)
ui.save_figure(fig, "best_tree", config={"key": spec.key, "expression": str(best)})
plt.show()

# %% [markdown]
# ## Rejections and the cache
# How much training the sanity filter and the equivalence cache saved.

# %%
counts = result.history.groupby("status").size().rename("candidates").to_frame()
counts.loc["cache hits"] = int(result.history["cache_hit"].sum())
counts

# %%
ngl_rows = result.history[result.history["expression"] == str(ngl.LossExpression.parse(ngl_text))]
if len(ngl_rows):
    print(f"NGL (seeded) reached validation accuracy {ngl_rows['val_accuracy'].iloc[0]:.4f}; "
          f"the best found loss {hof['val_accuracy'].iloc[0]:.4f}")
spec.budget.to_dict()
