"""PyTorch (eager, CPU or CUDA): autograd and torch.optim.SGD, as a researcher writes it."""

import math
import time

import numpy as np
import torch

from common import parse_args, report, synthetic


def main():
    args = parse_args("torch-eager")
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() and args.device_cuda else "cpu"
    x_np, y_np = synthetic(np, args.n, args.d)
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).to(device)
    scale = 1.0 / math.sqrt(args.m)
    finals = []
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for kappa in args.kappa_list:
        for seed in range(args.seeds):
            gen = torch.Generator(device=device).manual_seed(seed)
            w = torch.randn(args.m, args.d, generator=gen, device=device).requires_grad_()
            a = torch.randint(0, 2, (args.m,), generator=gen, device=device).float() * 2 - 1
            opt = torch.optim.SGD([w], lr=args.lr)
            clean = torch.empty(args.steps + 1, device=device)
            for k in range(args.steps + 1):
                with torch.no_grad():
                    clean[k] = 0.5 * ((torch.relu(x @ w.T) @ a * scale - y) ** 2).sum()
                if k == args.steps:
                    break
                c = 1.0 + kappa * torch.randn(args.n, args.d, generator=gen, device=device)
                loss = 0.5 * ((torch.relu((x * c) @ w.T) @ a * scale - y) ** 2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            finals.append(clean[-1].item())
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    report(
        "torch-eager" + ("-cuda" if device == "cuda" else ""),
        seconds,
        len(finals),
        args,
        finals,
        {"version": torch.__version__, "threads": torch.get_num_threads()},
    )


if __name__ == "__main__":
    main()
