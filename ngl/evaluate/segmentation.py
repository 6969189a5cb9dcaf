"""Semantic segmentation with NGL per pixel: a tiny net, generated masks, mIoU, a training loop.

Every loss in :mod:`ngl.losses` takes logits ``[B, C, H, W]`` and a target ``[B, H, W]`` of class
indices: NGL is applied per pixel (class axis moved last) and averaged over the non-ignored
pixels; ``ignore_index`` pixels (VOC's 255 "void" borders) contribute neither value nor gradient.

    from ngl.evaluate import make_shapes, TinySegNet, train_segmentation
    from ngl import get_loss

    x, y = make_shapes(256, size=32, seed=0)            # shapes on noise, void borders = 255
    model = TinySegNet(in_channels=1, num_classes=3)
    res = train_segmentation(model, get_loss("ngl", ignore_index=255), x[:200], y[:200],
                             x[200:], y[200:], num_classes=3, epochs=5)
    res["val_miou"]

Pascal VOC 2012 (the paper's segmentation benchmark; 21 classes, 255 = void) on your machine::

    import torch, torchvision
    from torchvision.transforms import v2 as T
    from torchvision import tv_tensors

    tf = T.Compose([T.RandomResizedCrop(256, scale=(0.5, 1.0), antialias=True),
                    T.RandomHorizontalFlip(), T.ToImage(), T.ToDtype(torch.float32, scale=True),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def joint(img, mask):  # the same crop/flip for image and mask
        img, mask = tf(img, tv_tensors.Mask(torch.as_tensor(np.array(mask))))
        return img, mask.long()

    voc = torchvision.datasets.VOCSegmentation("/data/voc", year="2012", image_set="train",
                                               download=False, transforms=joint)
    loader = torch.utils.data.DataLoader(voc, batch_size=16, shuffle=True, num_workers=8)
    model = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, num_classes=21)
    loss = get_loss("ngl", ignore_index=255)
    # loop: logits = model(img)["out"]; value = loss(logits, mask); ...
    # evaluate with confusion_matrix(logits.argmax(1), mask, 21, ignore_index=255) summed over
    # the val set, then miou(conf).

:func:`train_segmentation` works on in-memory tensors (what the tests and the toy data need);
for VOC-sized data use the loop sketched above with the same loss and metric functions.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ngl.train.optim import apply_step, build_optimizer, forward_backward

__all__ = ["make_shapes", "TinySegNet", "confusion_matrix", "miou", "train_segmentation",
           "VOID"]

VOID = 255


def make_shapes(n: int, size: int = 32, num_classes: int = 3, seed: int = 0, noise: float = 0.35,
                void_border: bool = True) -> tuple[Tensor, Tensor]:
    """``n`` noisy grey images ``[n, 1, size, size]`` with masks ``[n, size, size]``.

    Class 0 is background; each image holds one disc (class 1) and one square (class 2; classes
    beyond 2 are further discs with other brightness). With ``void_border`` a 1-pixel ring
    around every object is marked :data:`VOID` (255), like VOC's object outlines.
    """
    if num_classes < 2:
        raise ValueError("num_classes must be >= 2")
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x = torch.zeros(n, 1, size, size)
    y = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for c in range(1, num_classes):
            r = int(torch.randint(size // 8, size // 4 + 1, (1,), generator=g))
            cy, cx = (int(v) for v in torch.randint(r, size - r, (2,), generator=g))
            if c == 2:
                obj = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
            else:
                obj = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            y[i][obj] = c
        brightness = torch.linspace(0.0, 1.0, num_classes)
        x[i, 0] = brightness[y[i]]
    if void_border:
        one_hot = F.one_hot(y, num_classes).permute(0, 3, 1, 2).float()
        dilated = F.max_pool2d(one_hot, 3, stride=1, padding=1)
        border = (dilated.sum(dim=1) > 1)  # pixels next to another class
        y = torch.where(border, torch.full_like(y, VOID), y)
    x = x + noise * torch.randn(x.shape, generator=g)
    return (x - x.mean()) / x.std(), y


class TinySegNet(nn.Module):
    """A two-level U-Net: conv blocks, one 2x down/up-sampling with a skip, a 1x1 classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.enc1 = block(in_channels, width)
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), block(width, 2 * width), block(2 * width, 2 * width))
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = block(2 * width, width)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.enc1(x)
        b = self.up(self.enc2(a))
        if b.shape[-2:] != a.shape[-2:]:  # odd sizes
            b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.dec(torch.cat([a, b], dim=1)))


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int,
                     ignore_index: int = VOID) -> Tensor:
    """``[C, C]`` counts, rows = true class, columns = predicted; ``ignore_index`` pixels skipped."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if bool(((target < 0) | (target >= num_classes)).any()):
        raise ValueError(f"target holds values outside [0, {num_classes - 1}] and != {ignore_index}")
    idx = target * num_classes + pred.clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou(conf: Tensor) -> dict[str, Any]:
    """Per-class IoU, mean IoU over classes that occur (in target or prediction), pixel accuracy."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    present = union > 0
    return {"miou": float(iou[present].mean()) if bool(present.any()) else math.nan,
            "iou": [None if math.isnan(v) else float(v) for v in iou.tolist()],
            "pixel_accuracy": float(tp.sum() / conf.sum().clamp_min(1))}


@torch.no_grad()
def _evaluate(model: nn.Module, x: Tensor, y: Tensor, num_classes: int, ignore_index: int,
              batch_size: int) -> dict[str, Any]:
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=x.device)
    for s in range(0, len(x), batch_size):
        conf += confusion_matrix(model(x[s:s + batch_size]).argmax(1), y[s:s + batch_size],
                                 num_classes, ignore_index).to(conf.device)
    model.train()
    return miou(conf.cpu())


def train_segmentation(model: nn.Module, loss: nn.Module, x_train: Tensor, y_train: Tensor,
                       x_val: Tensor, y_val: Tensor, num_classes: int, epochs: int = 5,
                       batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
                       ignore_index: int = VOID, device: str | torch.device = "cpu",
                       progress: bool = True, optimizer: str = "adam", weight_decay: float = 0.0,
                       momentum: float = 0.9, nesterov: bool = False) -> dict[str, Any]:
    """Training on in-memory tensors; per-epoch train loss, val mIoU and pixel accuracy.

    The optimizer (Adam by default) comes from :func:`ngl.train.optim.build_optimizer`, the builder
    of every ``ngl`` loop. Follows :mod:`ngl.train.optim`'s non-finite policy: a NaN/inf loss *or
    gradient* stops the run with ``status="nonfinite"`` before any step with it. The loss must
    have been built with the same ``ignore_index`` (``get_loss("ngl", ignore_index=255)``).
    """
    if getattr(loss, "ignore_index", ignore_index) != ignore_index:
        raise ValueError(f"loss.ignore_index={loss.ignore_index} but ignore_index={ignore_index}")
    device = torch.device(device)
    model.to(device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_val, y_val = x_val.to(device), y_val.to(device)
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                          momentum=momentum, nesterov=nesterov)
    history, status, t0 = [], "ok", time.perf_counter()
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # float32: the shared step, unscaled
    model.train()
    for epoch in tqdm(range(epochs), disable=not progress, desc="epochs", leave=False):
        perm = torch.randperm(len(x_train), generator=g).to(device)
        total, count = 0.0, 0
        for s in range(0, len(perm), batch_size):
            idx = perm[s:s + batch_size]
            value, finite = forward_backward(model, loss, x_train[idx], y_train[idx], opt,
                                             scaler, False, params)
            if not bool(finite):  # ngl.train.optim's policy: no step with them
                status = "nonfinite"
                break
            apply_step(opt, scaler)
            total += float(value.detach()) * len(idx)
            count += len(idx)
        if status != "ok":
            history.append({"epoch": epoch + 1, "status": status})
            break
        metrics = _evaluate(model, x_val, y_val, num_classes, ignore_index, 4 * batch_size)
        history.append({"epoch": epoch + 1, "train_loss": total / count,
                        "val_miou": metrics["miou"], "val_pixel_accuracy": metrics["pixel_accuracy"],
                        "val_iou": metrics["iou"]})
    out: dict[str, Any] = {"status": status, "history": history, "time_s": time.perf_counter() - t0}
    done = [h for h in history if "val_miou" in h]
    if done:
        out.update({k: done[-1][k] for k in ("val_miou", "val_pixel_accuracy", "val_iou")})
    return out
