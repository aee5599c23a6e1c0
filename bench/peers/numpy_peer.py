"""NumPy (CPU): the hand-written gradient of the masked loss, one step at a time."""

import math
import time

import numpy as np

from common import parse_args, report, synthetic


def main():
    args = parse_args("numpy")
    x, y = synthetic(np, args.n, args.d)
    scale = np.float32(1.0 / math.sqrt(args.m))
    lr = np.float32(args.lr)
    finals = []
    start = time.perf_counter()
    for kappa in args.kappa_list:
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            w = rng.standard_normal((args.m, args.d), dtype=np.float32)
            a = np.where(rng.random(args.m) < 0.5, -1.0, 1.0).astype(np.float32)
            clean = np.empty(args.steps + 1, dtype=np.float32)
            for k in range(args.steps + 1):
                clean[k] = 0.5 * np.sum((np.maximum(x @ w.T, 0) @ a * scale - y) ** 2)
                if k == args.steps:
                    break
                c = rng.standard_normal((args.n, args.d), dtype=np.float32)
                xm = x * (1 + np.float32(kappa) * c)
                z = xm @ w.T
                r = np.maximum(z, 0) @ a * scale - y
                g = (r[:, None] * (a * scale)[None, :]) * (z > 0)
                w -= lr * (g.T @ xm)
            finals.append(float(clean[-1]))
    seconds = time.perf_counter() - start
    report("numpy", seconds, len(finals), args, finals, {"version": np.__version__})


if __name__ == "__main__":
    main()
