"""PyTorch eager (CPU or CUDA), the depth workloads (e) and (g): the MLP of deep_jax.py with all
(κ, seed) replicas stacked on a leading axis (batched matmuls, what `torch.func.vmap` of the
model would run), autograd and torch.optim.SGD, a fresh `torch.randn` mask per step, the clean
loss every `--log-every` steps."""

import math
import time

import numpy as np
import torch

from common import parse_args, report, synthetic


def main():
    args = parse_args("torch-deep")
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() and args.device_cuda else "cpu"
    x_np, y_np = synthetic(np, args.n, args.d)
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).to(device)
    m, depth = args.m, args.depth
    out_scale, hidden_scale = 1.0 / math.sqrt(m), math.sqrt(2.0 / m)
    replicas = [(k, s) for k in args.kappa_list for s in range(args.seeds)]
    r = len(replicas)
    gen = torch.Generator(device=device).manual_seed(0)
    ws = [torch.randn(r, m, args.d, generator=gen, device=device).requires_grad_()]
    ws += [
        torch.randn(r, m, m, generator=gen, device=device).requires_grad_()
        for _ in range(depth - 2)
    ]
    a = (torch.randint(0, 2, (r, m, 1), generator=gen, device=device).float() * 2 - 1)
    kappa = torch.tensor([k for k, _ in replicas], device=device).view(r, 1, 1)
    opt = torch.optim.SGD(ws, lr=args.lr)

    def forward(xs):
        h = torch.relu(xs @ ws[0].transpose(1, 2))
        for w in ws[1:]:
            h = torch.relu(hidden_scale * (h @ w.transpose(1, 2)))
        return (h @ a).squeeze(2) * out_scale  # [R, n]

    def half_sse(xs):
        return 0.5 * ((forward(xs) - y) ** 2).sum(dim=1)  # [R]

    logs = []
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for k in range(args.steps + 1):
        if k % args.log_every == 0 or k == args.steps:
            with torch.no_grad():
                logs.append(half_sse(x))
        if k == args.steps:
            break
        c = 1.0 + kappa * torch.randn(r, args.n, args.d, generator=gen, device=device)
        loss = half_sse(x * c).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    finals = logs[-1].tolist()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    report(
        "torch-deep" + ("-cuda" if device == "cuda" else ""),
        seconds,
        r,
        args,
        finals,
        {"version": torch.__version__, "threads": torch.get_num_threads(), "depth": depth},
    )


if __name__ == "__main__":
    main()
