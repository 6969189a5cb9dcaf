"""GPU checks that CI (CPU only) cannot do: losses under CUDA autocast, compiled expressions on
CUDA, and a tiny GP search end to end on the GPU. Prints one JSON line per check.

    python benchmarks/gpu_smoke.py
"""

from __future__ import annotations

import json
import tempfile
import time

import torch

import ngl

NGL_TEXT = ngl.NGL_EXPRESSION


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    dev = torch.device("cuda")
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__}))

    # every loss under bf16 autocast: float32 result, finite, equal to the float32 computation
    lin = torch.nn.Linear(64, 100).to(dev)
    x = torch.randn(256, 64, device=dev)
    t = torch.randint(0, 100, (256,), device=dev)
    out = {}
    for name in ngl.available_losses():
        loss = ngl.get_loss(name)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = lin(x)
            v = loss(logits, t)
        v.backward()
        ref = loss(logits.float(), t)
        out[name] = {"dtype": str(v.dtype), "finite": bool(torch.isfinite(v)),
                     "rel_err_vs_fp32": float((v - ref).abs() / ref.abs().clamp_min(1e-12))}
    print(json.dumps({"check": "autocast_bf16", "losses": out}))

    # compiled NGL text equals hand-written NGL on CUDA, segmentation shape with ignore_index
    z = torch.randn(4, 21, 32, 32, device=dev) * 3
    tt = torch.randint(0, 21, (4, 32, 32), device=dev)
    tt[:, :4] = 255
    a = ngl.LossExpression.parse(NGL_TEXT).to_module(ignore_index=255)(z, tt)
    b = ngl.get_loss("ngl", ignore_index=255)(z, tt)
    print(json.dumps({"check": "expression_equals_ngl_cuda", "equal": bool(torch.equal(a, b))}))

    # a tiny search on the GPU
    spec = ngl.SearchSpec(population_size=16, generations=2, seed_expressions=(NGL_TEXT,),
                          budget=ngl.TrainBudget(steps=100, batch_size=128))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        res = ngl.search(spec, d, device="cuda", chunk_size=16, cuda_graph=True, progress=False)
        hof = res.hall_of_fame(3)
        print(json.dumps({"check": "search_cuda", "seconds": round(time.perf_counter() - start, 1),
                          "candidates": len(res.history), "complete": res.complete,
                          "best": [str(e) for e in hof.expression],
                          "best_acc": [round(float(v), 4) for v in hof.val_accuracy]}))


if __name__ == "__main__":
    main()
