"""Workload (d) in JAX (jit, float64), as a researcher would write it: every array over
(sample, neuron, neuron) at once; JAX has no Φ₂, so it is the Drezner–Wesolowsky integral
Φ₂(h, k; ρ) = Φ(h)Φ(k) + (1/2π) ∫₀^{asin ρ} exp(−(h² + k² − 2hk sin θ) / (2cos²θ)) dθ
by 20-point Gauss–Legendre over the whole range."""

import math
import os
import time

from exact_common import load, parse_args, report

args = parse_args("exact_jax")
if not args.device_cuda:
    os.environ["JAX_PLATFORMS"] = "cpu"
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import ndtr  # noqa: E402

NODES, WEIGHTS = np.polynomial.legendre.leggauss(20)


def pdf(t):
    return jnp.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def bvn_cdf(h, k, rho):
    half = jnp.arcsin(rho) / 2  # θ = half · (1 + node) covers [0, asin ρ]
    total = jnp.zeros_like(h)
    for node, weight in zip(NODES, WEIGHTS):
        sn = jnp.sin(half * (1 + node))
        total = total + weight * jnp.exp((sn * h * k - (h * h + k * k) / 2) / (1 - sn * sn))
    return ndtr(h) * ndtr(k) + total * half / (2 * math.pi)


@jax.jit
def expected_loss(x, y, w, a, kappa):
    m = w.shape[0]
    v = x[:, None, :] * w[None, :, :]
    z = v.sum(-1)
    norm = jnp.linalg.norm(v, axis=-1)
    s = kappa * norm
    al = z / s
    mean = z * ndtr(al) + s * pdf(al)
    f_tilde = mean @ a / math.sqrt(m)
    rho = jnp.einsum("nrd,nqd->nrq", v, v) / (norm[:, :, None] * norm[:, None, :])
    eye = jnp.eye(m, dtype=bool)[None]
    rho = jnp.where(eye, 0.0, jnp.clip(rho, -1 + 1e-15, 1 - 1e-15))
    A, B = al[:, :, None], al[:, None, :]
    rb = jnp.sqrt(1 - rho * rho)
    ta, tb = (A - rho * B) / rb, (B - rho * A) / rb
    unit = ((A * B + rho) * bvn_cdf(A, B, rho) + A * pdf(B) * ndtr(ta)
            + B * pdf(A) * ndtr(tb) + rb * pdf(A) * pdf(tb))
    moment = unit * s[:, :, None] * s[:, None, :]
    second = (z * z + s * s) * ndtr(al) + z * s * pdf(al)
    moment = jnp.where(eye, second[:, :, None], moment)
    cov = moment - mean[:, :, None] * mean[:, None, :]
    var = jnp.einsum("nrq,r,q->n", cov, a, a) / m
    return 0.5 * (((f_tilde - y) ** 2).sum() + var.sum())


x, y, w, a = (jnp.asarray(t) for t in load(np, args.problem))
# Compile outside the timing (κ is traced, so one compilation serves every κ).
expected_loss(x, y, w, a, args.kappa_list[0]).block_until_ready()
start = time.perf_counter()
values = [float(expected_loss(x, y, w, a, k).block_until_ready()) for k in args.kappa_list]
seconds = time.perf_counter() - start
report("jax-jit", f"jax {jax.__version__}", seconds, values)
