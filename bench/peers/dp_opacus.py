"""Opacus (PyTorch eager, CPU or CUDA), workload (h): DP-SGD epochs of image-accuracy's MLP
(784-256-10) or its CNN without batch norm (two conv5×5 "same"–ReLU–maxpool2 blocks of 16 and
32 channels, dropout 0.25, a 128-unit dense layer; Opacus refuses BatchNorm) on 10 000 28×28
images: Poisson sampling at an expected batch of 128, every per-sample gradient clipped to norm
1, Gaussian noise of multiplier 1, Adam (lr 1e-3), cross entropy. The script an Opacus user
writes (`PrivacyEngine.make_private`, its default per-sample gradient hooks). Images are
random standardized pixels (timing does not depend on their content). Reports the seconds of
the timed epochs, after one warm-up epoch."""

import json

import opacus
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from image_torch import arguments, images, model, timed


def main():
    args, device = arguments(
        __doc__, kappa=0.0, kappa_help="unused: DP-SGD runs without the mask",
        batch_help="expected batch (Poisson sampling)",
    )
    x, y = images(args.n)
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

    seconds, _ = timed(epoch, args.epochs, device)
    print(json.dumps({"seconds": seconds, "version": f"torch {torch.__version__}, opacus {opacus.__version__}"}))


if __name__ == "__main__":
    main()
