"""The ops of bench/micro's gaussmask-ops in PyTorch eager (forward plus backward, median of
repeats), printed as one JSON object with the same keys."""

import argparse
import json
import statistics
import time

import torch
from torch import nn


def timed(reps, f):
    f()
    t = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        t.append(time.perf_counter() - start)
    return statistics.median(t)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reps, b, out = 15, 128, {}
    for c, o, hw in [(1, 16, 28), (16, 32, 14)]:
        conv = nn.Conv2d(c, o, 5, padding=2)
        x = torch.randn(b, c, hw, hw, requires_grad=True)
        out[f"conv2d {c}->{o} 5x5 {hw}x{hw} fwd"] = timed(reps, lambda: conv(x).sum().item())

        def conv_step():
            conv.zero_grad()
            conv(x).sum().backward()
            conv.weight.grad.sum().item()

        out[f"conv2d {c}->{o} 5x5 {hw}x{hw} fwd+bwd"] = timed(reps, conv_step)
        norm, pool = nn.BatchNorm2d(o), nn.MaxPool2d(2)
        z = torch.randn(b, o, hw, hw, requires_grad=True)

        def block():
            z.grad = None
            pool(torch.relu(norm(z))).sum().backward()
            z.grad.sum().item()

        out[f"batchnorm+relu+maxpool {o}x{hw}x{hw} fwd+bwd"] = timed(reps, block)

        def only(layer):
            def f():
                z.grad = None
                layer(z).sum().backward()
                z.grad.sum().item()
            return f

        out[f"batchnorm {o}x{hw}x{hw} fwd+bwd"] = timed(reps, only(norm))
        out[f"maxpool 2x2 {o}x{hw}x{hw} fwd+bwd"] = timed(reps, only(pool))
    for i, o in [(784, 256), (1568, 128)]:
        linear = nn.Linear(i, o)
        x = torch.randn(b, i, requires_grad=True)

        def dense():
            linear.zero_grad()
            torch.relu(linear(x)).sum().backward()
            linear.weight.grad.sum().item()

        out[f"linear {i}->{o} fwd+bwd"] = timed(reps, dense)
    for m in [100, 512]:
        w = torch.randn(18, m, m, requires_grad=True)
        h = torch.randn(18, 500, m)

        def bmm():
            w.grad = None
            torch.relu(h @ w.transpose(1, 2)).sum().backward()
            w.grad.sum().item()

        out[f"batched matmul 18x[500x{m}]·[{m}x{m}] fwd+bwd"] = timed(reps, bmm)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
