"""Shared by the peer scripts: the workload's arguments, its synthetic data and the report line.

Every peer trains the trajectories workload: a two-layer ReLU net f(W, x) = relu(x Wᵀ) a / √m
with frozen output signs a, full-batch GD on ½ Σ (f(W, x ⊙ c) − y)² with a fresh mask
c ~ N(1, κ²) per sample and coordinate at every step, and the clean loss logged at every step.
Each (κ, seed) pair is one run; the runs of a sweep go one after another, as a researcher's
script would. Only the training loop is timed (data in memory → losses on the host).
"""

import argparse
import json
import math
import sys


def parse_args(name):
    p = argparse.ArgumentParser(description=f"{name}: the gaussmask trajectories workload")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--d", type=int, default=20)
    p.add_argument("--m", type=int, default=100)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--kappas", type=str, default="0.4", help="comma-separated κ values")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cuda", dest="device_cuda", action="store_true", help="run on the GPU")
    p.add_argument("--depth", type=int, default=2, help="weight layers (deep peers only)")
    p.add_argument("--log-every", type=int, default=1, help="steps between clean-loss logs")
    args = p.parse_args()
    args.kappa_list = [float(k) for k in args.kappas.split(",")]
    return args


def synthetic(np, n, d, seed=0):
    """Unit-sphere inputs and standardized teacher labels (as gaussmask's default data)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    teacher = rng.standard_normal((10, d))
    signs = np.sign(rng.standard_normal(10))
    y = np.maximum(x @ teacher.T, 0.0) @ signs / math.sqrt(10)
    y = (y - y.mean()) / y.std()
    return x.astype(np.float32), y.astype(np.float32)


def report(name, seconds, runs, args, final_clean, extra=None):
    out = {
        "peer": name,
        "seconds": seconds,
        "runs": runs,
        "steps": args.steps,
        "n": args.n,
        "d": args.d,
        "m": args.m,
        "final_clean_mean": sum(final_clean) / len(final_clean),
    }
    out.update(extra or {})
    print(json.dumps(out))
    sys.stdout.flush()
