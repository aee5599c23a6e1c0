"""JAX (CPU or GPU), the depth workloads (e) and (g): a ReLU MLP of `--depth` weight layers in
gaussmask's NTK parameterization, h_l = relu(√(2/m) W_l h_{l−1}), f = h a / √m, frozen signs a,
masked full-batch GD, the clean loss every `--log-every` steps. All (κ, seed) replicas at once:
`jax.vmap` of a run compiled with `lax.fori_loop`, as a researcher writes a sweep in JAX.
Compilation is timed apart (`first_run_seconds`); the reported time is a second, compiled call."""

import math
import os
import time

from common import parse_args, report, synthetic


def main():
    args = parse_args("jax-deep")
    if not args.device_cuda:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np

    x_np, y_np = synthetic(np, args.n, args.d)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    m, depth, every = args.m, args.depth, args.log_every
    out_scale, hidden_scale = 1.0 / math.sqrt(m), math.sqrt(2.0 / m)
    logs = args.steps // every + 1

    def half_sse(ws, a, xs):
        h = jax.nn.relu(xs @ ws[0].T)
        for w in ws[1:]:
            h = jax.nn.relu(hidden_scale * (h @ w.T))
        return 0.5 * jnp.sum((h @ a * out_scale - y) ** 2)

    grad = jax.grad(half_sse)

    def run(ws, a, key, kappa):
        def body(k, carry):
            ws, key, losses = carry
            losses = jax.lax.cond(
                k % every == 0,
                lambda l: l.at[k // every].set(half_sse(ws, a, x)),
                lambda l: l,
                losses,
            )
            key, sub = jax.random.split(key)
            c = 1.0 + kappa * jax.random.normal(sub, x.shape, dtype=x.dtype)
            g = grad(ws, a, x * c)
            return [w - args.lr * gw for w, gw in zip(ws, g)], key, losses

        losses = jnp.zeros(logs, dtype=x.dtype)
        ws, key, losses = jax.lax.fori_loop(0, args.steps, body, (ws, key, losses))
        return losses.at[logs - 1].set(half_sse(ws, a, x))

    sweep = jax.jit(jax.vmap(run))

    def init(seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), depth + 1)
        ws = [jax.random.normal(keys[0], (m, args.d), dtype=x.dtype)]
        ws += [jax.random.normal(k, (m, m), dtype=x.dtype) for k in keys[1 : depth - 1]]
        a = jnp.where(jax.random.bernoulli(keys[depth - 1], 0.5, (m,)), 1.0, -1.0)
        return ws, a.astype(x.dtype), keys[depth]

    replicas = [(k, s) for k in args.kappa_list for s in range(args.seeds)]
    inits = [init(s) for _, s in replicas]
    ws = [jnp.stack([i[0][l] for i in inits]) for l in range(depth - 1)]
    a = jnp.stack([i[1] for i in inits])
    keys = jnp.stack([i[2] for i in inits])
    kappas = jnp.asarray([k for k, _ in replicas], dtype=x.dtype)

    t0 = time.perf_counter()
    sweep(ws, a, keys, kappas).block_until_ready()  # compiles
    compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    losses = np.asarray(sweep(ws, a, keys, kappas))
    seconds = time.perf_counter() - t0
    report(
        "jax-deep" + ("-gpu" if args.device_cuda else ""),
        seconds,
        len(replicas),
        args,
        [float(v) for v in losses[:, -1]],
        {"version": jax.__version__, "first_run_seconds": compile_seconds, "depth": depth},
    )


if __name__ == "__main__":
    main()
