"""ImageNet-1k recipe with any ngl loss, data-parallel with torch.distributed (DDP).

The paper reports that NGL beat identically trained CE models on ImageNet-1k; its model and
recipe are not known. This script is a standard, documented baseline to run that comparison
yourself: the same command with ``--loss ce`` and ``--loss ngl`` (and the same ``--seed``).

    # 8 GPUs on one machine (NCCL):
    torchrun --nproc_per_node=8 -m ngl.evaluate.imagenet --loss ngl --data /path/imagenet --model resnet50
    # smoke test on CPU, 2 processes (gloo), no dataset needed:
    torchrun --standalone --nproc_per_node=2 -m ngl.evaluate.imagenet --fake-data --model resnet18 \\
        --image-size 32 --epochs 1 --steps 2 --batch-size 4

``--data`` must hold ``train/`` and ``val/`` in ``torchvision.datasets.ImageFolder`` layout (one
folder per class; for the official val set run the usual ``valprep.sh`` first). Defaults follow
the common torchvision ResNet-50 recipe adapted to Adam-family optimizers, because NGL's logit
gradients are about 1000x smaller than CE's for 1000 classes (mean over classes), so SGD at CE
learning rates barely trains: AdamW, lr 1e-3 x (global batch / 1024), weight decay 0.05, cosine
schedule with linear warm-up, random-resized crop 224 + flip, 90 epochs, mixed precision on GPU.
``--optimizer sgd`` uses momentum 0.9 with Nesterov momentum unless ``--no-nesterov`` (the
optimizer comes from :func:`ngl.train.optim.build_optimizer`, like every other ``ngl`` loop).
Say which optimizer you used next to every number you report.

Each process runs on its ``LOCAL_RANK`` GPU (NCCL) or on the CPU (gloo). Rank 0 writes a
checkpoint per epoch to ``--out`` (``--resume`` continues from it) and prints one JSON line per
epoch: ``{"epoch", "train_loss", "val_top1", "val_top5", "status", ...}``. A non-finite loss or
gradient on any rank stops every rank with ``status="nonfinite"`` before any step with it
(:mod:`ngl.train.optim`'s policy). Run ``python -m ngl.evaluate.imagenet --help`` for all
options.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torchvision
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import transforms as T

from ngl.io.records import atomic_write
from ngl.losses import registry as loss_registry  # get_loss looked up per call, so patchable
from ngl.train.optim import apply_step, build_optimizer, forward_backward

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ngl.evaluate.imagenet",
                                description="ImageNet-1k training with an ngl loss (DDP).")
    p.add_argument("--loss", default="ngl", help="a name for ngl.get_loss (ngl, ce, focal, ...)")
    p.add_argument("--data", default=None, help="ImageNet root with train/ and val/ (ImageFolder)")
    p.add_argument("--fake-data", action="store_true", help="torchvision FakeData instead of --data")
    p.add_argument("--fake-size", type=int, default=64, help="images per split with --fake-data")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--model", default="resnet50", help="a torchvision classification model")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--steps", type=int, default=None, help="cap on steps per epoch (smoke tests)")
    p.add_argument("--batch-size", type=int, default=128, help="per process")
    p.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default="adamw")
    p.add_argument("--lr", type=float, default=None,
                   help="default: 1e-3 (adam/adamw) or 0.1 (sgd), times global batch / 1024")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (sgd only)")
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum for sgd (default: on with sgd, the usual ResNet "
                        "recipe; not available with adam/adamw)")
    p.add_argument("--warmup-epochs", type=float, default=5.0)
    p.add_argument("--label-smoothing", type=float, default=0.0, help="for --loss ce only")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/imagenet", help="checkpoint directory")
    p.add_argument("--resume", action="store_true")
    return p


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, device


def _datasets(args):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    s = args.image_size
    train_tf = T.Compose([T.RandomResizedCrop(s, antialias=True), T.RandomHorizontalFlip(),
                          T.ToTensor(), T.Normalize(mean, std)])
    val_tf = T.Compose([T.Resize(int(s * 256 / 224), antialias=True), T.CenterCrop(s),
                        T.ToTensor(), T.Normalize(mean, std)])
    if args.fake_data:
        mk = torchvision.datasets.FakeData
        return (mk(args.fake_size, (3, s, s), args.num_classes, T.Compose([T.ToTensor(),
                   T.Normalize(mean, std)]), random_offset=args.seed),
                mk(args.fake_size, (3, s, s), args.num_classes, T.Compose([T.ToTensor(),
                   T.Normalize(mean, std)]), random_offset=args.seed + 10**6))
    if not args.data:
        raise SystemExit("give --data /path/imagenet (with train/ and val/) or --fake-data")
    root = Path(args.data)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise SystemExit(f"{root / split} does not exist; expected ImageFolder layout")
    return (torchvision.datasets.ImageFolder(root / "train", train_tf),
            torchvision.datasets.ImageFolder(root / "val", val_tf))


def _all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(t)
    return t.tolist()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank, world, device = _setup_distributed()
    try:
        return _train(args, rank, world, device)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(args, rank: int, world: int, device: torch.device) -> int:
    if args.nesterov is None:
        args.nesterov = args.optimizer == "sgd" and args.momentum > 0
    elif args.nesterov and args.optimizer != "sgd":
        raise SystemExit(f"--nesterov applies to --optimizer sgd only, got {args.optimizer}")

    torch.manual_seed(args.seed)  # same initial weights on every rank (DDP also broadcasts)
    train_set, val_set = _datasets(args)
    num_classes = args.num_classes if args.fake_data else len(train_set.classes)
    train_sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed)
    val_sampler = DistributedSampler(val_set, world, rank, shuffle=False)
    kw = {"batch_size": args.batch_size, "num_workers": args.workers,
          "pin_memory": device.type == "cuda", "persistent_workers": args.workers > 0}
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=True, **kw)
    val_loader = DataLoader(val_set, sampler=val_sampler, **kw)

    model = torchvision.models.get_model(args.model, weights=None, num_classes=num_classes).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_kw = {"label_smoothing": args.label_smoothing} if args.label_smoothing else {}
    if loss_kw and args.loss != "ce":
        raise SystemExit("--label-smoothing applies to --loss ce only")
    loss_fn = (nn.CrossEntropyLoss(**loss_kw) if loss_kw else loss_registry.get_loss(args.loss)).to(device)

    global_batch = args.batch_size * world
    base_lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 1e-3)
    lr = base_lr * global_batch / 1024 if args.lr is None else base_lr
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, optimizer=args.optimizer, lr=lr, weight_decay=args.weight_decay,
                          momentum=args.momentum, nesterov=args.nesterov)
    steps_per_epoch = len(train_loader) if args.steps is None else min(args.steps, len(train_loader))
    total = max(1, args.epochs * steps_per_epoch)
    warm = int(args.warmup_epochs * steps_per_epoch)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    amp = device.type == "cuda" and not args.no_amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    out = Path(args.out)
    ckpt = out / f"{args.model}_{args.loss}_seed{args.seed}.pt"
    start = 0
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        (model.module if world > 1 else model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["epoch"])

    status = "ok"
    for epoch in range(start, args.epochs):
        train_sampler.set_epoch(epoch)
        model.train()
        t0, loss_sum, n_seen = time.perf_counter(), 0.0, 0
        for step, (x, y) in enumerate(train_loader):
            if step >= steps_per_epoch:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            # every rank runs the backward: DDP's all-reduce needs all of them
            value, finite = forward_backward(model, loss_fn, x, y, opt, scaler, amp, params)
            # ngl.train.optim's policy: loss and gradients finite on every rank, else no step anywhere.
            # Under AMP the loss's logit gradient is checked; overflow of the scaled parameter
            # gradients is the GradScaler's (it skips the step and lowers the scale).
            bad = _all_sum([0.0 if bool(finite) else 1.0], device, world)[0]
            if bad:
                status = "nonfinite"
                break
            apply_step(opt, scaler)
            sched.step()
            loss_sum += float(value.detach()) * len(y)
            n_seen += len(y)
        model.eval()
        correct1 = correct5 = seen = 0.0
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=amp):
                    logits = model(x)
                top = logits.float().topk(min(5, num_classes), dim=1).indices
                correct1 += float((top[:, 0] == y).sum())
                correct5 += float((top == y[:, None]).any(dim=1).sum())
                seen += len(y)
        loss_sum, n_seen, correct1, correct5, seen = _all_sum(
            [loss_sum, n_seen, correct1, correct5, seen], device, world)
        row = {"epoch": epoch + 1, "status": status, "loss": args.loss, "model": args.model,
               "train_loss": loss_sum / max(n_seen, 1), "val_top1": correct1 / max(seen, 1),
               "val_top5": correct5 / max(seen, 1), "world_size": world,
               "global_batch": global_batch, "lr": opt.param_groups[0]["lr"],
               "optimizer": args.optimizer, "nesterov": args.nesterov,
               "epoch_s": time.perf_counter() - t0}
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            state = {"model": (model.module if world > 1 else model).state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch + 1, "args": json.dumps(vars(args))}
            atomic_write(ckpt, lambda tmp, state=state: torch.save(state, tmp))
            print(json.dumps(row), flush=True)
        if status != "ok":
            break
    return 0 if status == "ok" else 2


if __name__ == "__main__":
    raise SystemExit(main())
