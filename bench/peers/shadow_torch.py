"""PyTorch eager (CPU or CUDA), workload (i): LiRA's shadow models as `run lira` trains them at
κ = 0. Each of `--models` MLPs (784-128-10, ReLU) trains on its own seeded half of a pool of
1000 images (500 members), `--epochs` epochs of batch 50, Adam (lr 1e-3, constant), cross
entropy. Two ways a researcher writes it:
- `--mode sequential`: one nn.Module and optimizer per model, trained one after another;
- `--mode vmap`: the models' parameters stacked (`torch.func.stack_module_state`), one step of
  all models at once through `torch.func.vmap` of `functional_call`, one Adam over the stacks
  (Adam is element-wise, so that is each model's own Adam).
Reports the seconds of one timed run of all models, after one warm-up run."""

import argparse
import json

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from image_torch import images, timed

POOL, MEMBERS, BATCH = 1000, 500, 50


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def members(models, device):
    """Each model's 500 pool indices, a seeded half per model."""
    gen = torch.Generator().manual_seed(1)
    return torch.stack([torch.randperm(POOL, generator=gen)[:MEMBERS] for _ in range(models)]).to(device)


def sequential(x, y, halves, epochs, device):
    loss_fn = nn.CrossEntropyLoss()
    last = 0.0
    for half in halves:
        net = mlp().to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(epochs):
            for idx in half[torch.randperm(MEMBERS, device=device)].split(BATCH):
                loss = loss_fn(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        last = loss.item()
    return last


def batched(x, y, halves, epochs, device):
    models = halves.shape[0]
    params, buffers = stack_module_state([mlp().to(device) for _ in range(models)])
    base = mlp().to("meta")
    opt = torch.optim.Adam(params.values(), lr=1e-3)

    def loss_of(p, b, xb, yb):
        return nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    losses = vmap(loss_of)
    for _ in range(epochs):
        # Each model's own order of its members: [models, 500] → steps of [models, 50].
        order = torch.argsort(torch.rand(models, MEMBERS, device=device), dim=1)
        rows = torch.gather(halves, 1, order)
        for idx in rows.split(BATCH, dim=1):
            loss = losses(params, buffers, x[idx], y[idx]).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return loss.item() / models


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=["sequential", "vmap"], required=True)
    p.add_argument("--models", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cuda", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if args.cuda and torch.cuda.is_available() else "cpu"
    x, y = (t.to(device) for t in images(POOL))
    halves = members(args.models, device)
    train = sequential if args.mode == "sequential" else batched
    seconds, last = timed(lambda: train(x, y, halves, args.epochs, device), 1, device)
    print(json.dumps({
        "peer": f"torch-{args.mode}", "seconds": seconds, "last_loss": last,
        "version": torch.__version__, "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
