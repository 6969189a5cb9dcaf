"""Did the search's fitness order the finding's losses as the held-out test split did?

Reads what is committed here and prints one row per loss of the finding's main table: its
score under the search's fitness (the calibrated proxy: dense_cnn, 100 cosine Adam steps,
8,000 / 2,000 Fashion-MNIST images, seed 0 and the rescoring seeds where the search has them)
and its mean held-out test accuracy over the 5 validation seeds; then Spearman's rho with a
bootstrap 95 % CI (``ngl.evaluate.ranking.rank_agreement``).

Where each proxy score comes from (all on the same search-train / search-validation split):
- found losses: the search's ``fitness_mean`` (its own seed and the 2 rescoring seeds);
- CE: the search's reference row and its 2 rescoring rows (the same 3 seeds);
- NGL, focal, label smoothing: not references of this search; the Fashion-MNIST calibration's
  rows for the same proxy ("dense_cnn 100 cos", seed 0; its CE row, 0.836, is within 2
  validation images of the search's own CE reference, 0.835).

    .venv/bin/python findings/calibrated/proxy_order.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

import ngl
from ngl.evaluate.ranking import rank_agreement

HERE = Path(__file__).resolve().parent
CALIBRATION = HERE.parent / "calibration" / "fashion_mnist" / "proxies.jsonl"
PROXY = "dense_cnn 100 cos"


def proxy_scores() -> dict[str, tuple[float, str]]:
    result = ngl.load(HERE / "search")
    hof = result.hall_of_fame()
    scores = {r["expression"]: (float(r["fitness_mean"]), f"search, {int(r['n_seeds'])} seeds")
              for _, r in hof.iterrows() if not pd.isna(r["fitness_mean"])}
    ce = [r["val_accuracy"] for r in result.reference_rows if r["loss"] == "ce"]
    ce += [r["val_accuracy"] for r in result.rescore_rows
           if r.get("kind") == "reference" and r.get("loss") == "ce"]
    scores["ce"] = (float(np.mean(ce)), f"search reference, {len(ce)} seeds")
    for line in CALIBRATION.read_text().splitlines():
        row = json.loads(line)
        if row["proxy"] == PROXY and row["loss"] in ("ngl", "focal(gamma=2.0)", "label_smoothing"):
            scores[row["loss"]] = (float(row["val_accuracy"]), "calibration, seed 0")
    return scores


def main() -> pd.DataFrame:
    table = pd.read_csv(HERE / "table.csv")
    scores = proxy_scores()
    table = table[table["loss"].isin(scores)]
    found = json.loads((HERE / "plan.json").read_text())["found"]
    names = {f["expression"]: f"found #{f['rank']}" for f in found}
    out = pd.DataFrame({"loss": [names.get(v, v) for v in table["loss"]],
                        "proxy %": [100 * scores[v][0] for v in table["loss"]],
                        "proxy from": [scores[v][1] for v in table["loss"]],
                        "held-out test %": table["mean"].to_numpy()})
    out["proxy rank"] = out["proxy %"].rank(ascending=False).astype(int)
    out["held-out rank"] = out["held-out test %"].rank(ascending=False).astype(int)
    print(out.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    agree = rank_agreement(out["proxy %"].to_numpy(), out["held-out test %"].to_numpy())
    print(f"\nSpearman rho = {agree['rho']:.2f} [{agree['rho_low']:.2f}, {agree['rho_high']:.2f}] "
          f"over {agree['n']} losses; Kendall tau = {agree['tau']:.2f}")
    return out


if __name__ == "__main__":
    main()
