"""PyTorch eager (CPU or CUDA), workload (f): epochs of image-accuracy's MLP (784-256-10) or CNN
(two conv5×5 "same"–BN–ReLU–maxpool2 blocks of 16 and 32 channels, dropout 0.25, a 128-unit
dense layer) on 10 000 28×28 images, batch 128, Adam (lr 1e-3) with a cosine schedule, cross
entropy, every input pixel multiplied by a fresh c ~ N(1, κ²) per step: the nn.Module script
a researcher writes. Images are random standardized pixels (timing does not depend on their
content). Reports the seconds of the timed epochs, after one warm-up epoch."""

import argparse
import json
import time

import torch
from torch import nn


def model(kind, batch_norm=True):
    """image-accuracy's MLP or CNN (without its batch norm layers when `batch_norm` is off)."""
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    norm = lambda o: [nn.BatchNorm2d(o)] if batch_norm else []
    block = lambda c, o: [nn.Conv2d(c, o, 5, padding=2), *norm(o), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(
        *block(1, 16), *block(16, 32), nn.Flatten(), nn.Dropout(0.25),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def arguments(description, kappa=0.5, kappa_help=None, batch_help=None):
    """The command line of the image peers (model, images, timed epochs, batch, κ, threads,
    CUDA), with the thread count set; returns the arguments and the device."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs")
    p.add_argument("--batch", type=int, default=128, help=batch_help)
    p.add_argument("--kappa", type=float, default=kappa, help=kappa_help)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cuda", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    return args, "cuda" if args.cuda and torch.cuda.is_available() else "cpu"


def images(n):
    """`n` random standardized 1×28×28 images and labels of 10 classes, the same in every peer."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=gen)
    return x, torch.randint(0, 10, (n,), generator=gen)


def timed(epoch, epochs, device):
    """Seconds per call of `epoch` over `epochs` calls after one warm-up call (first-call
    allocations, oneDNN kernel selection), and the last call's result."""
    epoch()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        last = epoch()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / epochs, last


def main():
    args, device = arguments(__doc__)
    x, y = (t.to(device) for t in images(args.n))
    net = model(args.model).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = (args.n // args.batch + (args.n % args.batch > 0)) * (args.epochs + 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        net.train()
        for idx in torch.randperm(args.n, device=device).split(args.batch):
            xb = x[idx]
            xb = xb * (1.0 + args.kappa * torch.randn_like(xb))
            loss = loss_fn(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return loss.item()

    seconds, last = timed(epoch, args.epochs, device)
    print(json.dumps({
        "peer": f"torch-eager-{args.model}", "seconds": seconds,
        "last_loss": last, "version": torch.__version__, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
