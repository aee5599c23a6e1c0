"""JAX (CPU or GPU): the masked GD step under jax.jit, driven either from a Python loop
(`--mode step`) or compiled whole with lax.fori_loop (`--mode loop`). The first call of a run
compiles; it is timed apart (`compile_seconds`) and the reported time is a second, compiled
pass over the sweep, so compilation is not counted against JAX."""

import argparse
import math
import os
import sys
import time

from common import parse_args, report, synthetic


def main():
    mode = "loop"
    if "--mode" in sys.argv:
        i = sys.argv.index("--mode")
        mode = sys.argv[i + 1]
        del sys.argv[i : i + 2]
    if mode not in ("step", "loop"):
        raise SystemExit(f"--mode must be step or loop, got {mode}")
    args = parse_args(f"jax-{mode}")
    if not args.device_cuda:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np

    x_np, y_np = synthetic(np, args.n, args.d)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    scale = 1.0 / math.sqrt(args.m)
    steps, lr = args.steps, args.lr

    def half_sse(w, a, xs):
        return 0.5 * jnp.sum((jax.nn.relu(xs @ w.T) @ a * scale - y) ** 2)

    grad = jax.grad(half_sse)

    def step(w, a, key, kappa):
        key, sub = jax.random.split(key)
        c = 1.0 + kappa * jax.random.normal(sub, x.shape, dtype=x.dtype)
        clean = half_sse(w, a, x)
        return w - lr * grad(w, a, x * c), key, clean

    step_jit = jax.jit(step)

    @jax.jit
    def run_loop(w, a, key, kappa):
        def body(k, carry):
            w, key, losses = carry
            w, key, clean = step(w, a, key, kappa)
            return w, key, losses.at[k].set(clean)

        losses = jnp.zeros(steps + 1, dtype=x.dtype)
        w, key, losses = jax.lax.fori_loop(0, steps, body, (w, key, losses))
        return w, losses.at[steps].set(half_sse(w, a, x))

    def init(seed):
        kw, ka, key = jax.random.split(jax.random.PRNGKey(seed), 3)
        w = jax.random.normal(kw, (args.m, args.d), dtype=x.dtype)
        a = jnp.where(jax.random.bernoulli(ka, 0.5, (args.m,)), 1.0, -1.0).astype(x.dtype)
        return w, a, key

    def one_run(seed, kappa):
        w, a, key = init(seed)
        if mode == "loop":
            _, losses = run_loop(w, a, key, kappa)
            return float(losses[-1])
        clean = []
        for _ in range(steps):
            w, key, c = step_jit(w, a, key, kappa)
            clean.append(c)
        return float(half_sse(w, a, x))

    def sweep():
        return [one_run(s, k) for k in args.kappa_list for s in range(args.seeds)]

    t0 = time.perf_counter()
    one_run(0, args.kappa_list[0])  # compiles
    compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    finals = sweep()
    seconds = time.perf_counter() - t0
    report(
        f"jax-{mode}" + ("-gpu" if args.device_cuda else ""),
        seconds,
        len(finals),
        args,
        finals,
        {"version": jax.__version__, "first_run_seconds": compile_seconds},
    )


if __name__ == "__main__":
    main()
