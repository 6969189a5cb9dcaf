"""NGL per pixel with ignore_index, mIoU against hand counts, a tiny segmentation run."""

from __future__ import annotations

import math

import pytest
import torch

from ngl.evaluate.segmentation import (
    VOID,
    TinySegNet,
    confusion_matrix,
    make_shapes,
    miou,
    train_segmentation,
)
from ngl.losses.registry import get_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shapes_have_all_classes_and_void_borders():
    x, y = make_shapes(8, size=24, seed=1)
    assert x.shape == (8, 1, 24, 24) and y.shape == (8, 24, 24)
    assert set(torch.unique(y).tolist()) == {0, 1, 2, VOID}
    again = make_shapes(8, size=24, seed=1)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])


def test_ngl_per_pixel_ignores_void_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 5))
    target[0, :2] = VOID
    loss = get_loss("ngl", ignore_index=VOID)(logits, target)
    flat = logits.movedim(1, -1).reshape(-1, 3)
    t = target.reshape(-1)
    keep = t != VOID
    ref = get_loss("ngl")(flat[keep], t[keep])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[0, :, :2] == 0) and logits.grad[1].abs().sum() > 0


def test_confusion_matrix_and_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, VOID, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    m = miou(conf)
    # IoU: class 0: 1/(2+2-1) = 1/3; class 1: 3/(3+4-3) = 3/4; class 2: 1/(2+1-1) = 1/2
    assert m["iou"] == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert m["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)
    absent = miou(torch.tensor([[2, 0, 0], [0, 1, 0], [0, 0, 0]]))
    assert absent["iou"][2] is None and absent["miou"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        confusion_matrix(pred, torch.full_like(target, 7), 3)


@pytest.mark.parametrize("name", ["ngl", "ce"])
def test_tiny_net_learns_the_shapes(name):
    x, y = make_shapes(96, size=16, seed=0)
    torch.manual_seed(0)
    model = TinySegNet(1, 3, width=8)
    res = train_segmentation(model, get_loss(name, ignore_index=VOID), x[:72], y[:72], x[72:],
                             y[72:], num_classes=3, epochs=6, batch_size=12, lr=1e-2,
                             progress=False)
    assert res["status"] == "ok" and len(res["history"]) == 6
    assert res["val_miou"] > 0.5, res["history"]  # chance-level mIoU is about 0.2
    assert not math.isnan(res["history"][-1]["train_loss"])


def test_mismatched_ignore_index_is_refused():
    x, y = make_shapes(4, size=8)
    with pytest.raises(ValueError, match="ignore_index"):
        train_segmentation(TinySegNet(1, 3, 4), get_loss("ngl"), x, y, x, y, 3, epochs=1,
                           progress=False)


# -- ImageNet recipe: a DDP smoke test on FakeData under torchrun (2 CPU processes, gloo) ----------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_imagenet_recipe_runs_under_torchrun(tmp_path):
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun)] if torchrun.exists() else (
        [shutil.which("torchrun")] if shutil.which("torchrun") else None)
    if cmd is None:
        pytest.skip("torchrun not found")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    try:
        proc = subprocess.run(
            [*cmd, "--standalone", "--nproc_per_node=2", "-m", "ngl.evaluate.imagenet", "--fake-data",
             "--model", "resnet18", "--image-size", "32", "--epochs", "1", "--steps", "2",
             "--batch-size", "4", "--fake-size", "16", "--num-classes", "10", "--workers", "0",
             "--out", str(tmp_path / "ckpt")],
            capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.skip("torchrun did not finish in time (no free port / slow machine?)")
    start_failed = any(s in proc.stderr for s in ("RendezvousError", "Address already in use",
                                                  "EADDRINUSE", "DistNetworkError"))
    if proc.returncode != 0 and start_failed and "ngl/imagenet.py" not in proc.stderr:
        pytest.skip(f"torchrun could not start processes here: {proc.stderr[-400:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1  # only rank 0 prints
    row = rows[0]
    assert row["status"] == "ok" and row["world_size"] == 2 and row["global_batch"] == 8
    assert math.isfinite(row["train_loss"]) and 0 <= row["val_top1"] <= row["val_top5"] <= 1
    assert (tmp_path / "ckpt" / "resnet18_ngl_seed0.pt").exists()


def test_imagenet_cli_refuses_missing_data(tmp_path):
    from ngl.evaluate.imagenet import main

    with pytest.raises(SystemExit, match="--data"):
        main(["--workers", "0", "--model", "resnet18"])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--data", str(tmp_path), "--workers", "0"])


def test_finite_loss_with_infinite_gradient_takes_no_step():
    """The same policy as every ngl loop: a finite loss value is not enough, its gradient must
    be finite too, and no step is taken with a bad one."""
    import torch.nn.functional as F
    from torch import nn

    x, y = make_shapes(12, size=16, seed=0)
    torch.manual_seed(0)
    model = TinySegNet(1, 3, width=4)

    class Bomb(nn.Module):
        ignore_index = VOID

        def __init__(self) -> None:
            super().__init__()
            self.calls, self.before = 0, None

        def forward(self, logits, target):
            self.calls += 1
            value = F.cross_entropy(logits, target, ignore_index=VOID)
            if self.calls <= 2:
                return value
            self.before = [p.detach().clone() for p in model.parameters()]
            return value + torch.sqrt(logits - logits.detach()).sum()  # value + 0, gradient inf

    bomb = Bomb()
    res = train_segmentation(model, bomb, x[:8], y[:8], x[8:], y[8:], num_classes=3, epochs=2,
                             batch_size=2, progress=False)
    assert res["status"] == "nonfinite" and bomb.calls == 3
    after = [p.detach() for p in model.parameters()]
    assert all(torch.isfinite(p).all() for p in after)
    assert all(torch.equal(a, b) for a, b in zip(bomb.before, after, strict=True))
