"""Opacus (PyTorch eager, CPU or CUDA), workload (h): DP-SGD epochs of image-accuracy's MLP
(784-256-10) or its CNN without batch norm (two conv5×5 "same"–ReLU–maxpool2 blocks of 16 and
32 channels, dropout 0.25, a 128-unit dense layer; Opacus refuses BatchNorm) on 10 000 28×28
images: Poisson sampling at an expected batch of 128, every per-sample gradient clipped to norm
1, Gaussian noise of multiplier 1, Adam (lr 1e-3), cross entropy. The script an Opacus user
writes (`PrivacyEngine.make_private`, its default per-sample gradient hooks). Images are
random standardized pixels (timing does not depend on their content). Reports the seconds of
the timed epochs, after one warm-up epoch."""

import argparse
import json
import time

import opacus
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from image_torch import model


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=1, help="timed epochs")
    p.add_argument("--batch", type=int, default=128, help="expected batch (Poisson sampling)")
    p.add_argument("--kappa", type=float, default=0.0, help="unused: DP-SGD runs without the mask")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cuda", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if args.cuda and torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (args.n,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch)
    net = model(args.model, batch_norm=False).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net, opt, loader = PrivacyEngine().make_private(
        module=net, optimizer=opt, data_loader=loader, noise_multiplier=1.0,
        max_grad_norm=1.0, poisson_sampling=True,
    )
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        net.train()
        for xb, yb in loader:
            if len(xb) == 0:
                continue
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()

    epoch()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.epochs):
        epoch()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.epochs
    print(json.dumps({"seconds": seconds, "version": f"torch {torch.__version__}, opacus {opacus.__version__}"}))


if __name__ == "__main__":
    main()
