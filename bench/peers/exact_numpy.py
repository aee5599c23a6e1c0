"""Workload (d) in NumPy + SciPy, as a researcher would write it: every array over
(sample, neuron, neuron) at once, Φ₂ from Owen's T function (scipy.special.owens_t)."""

import math
import os
import time

from exact_common import load, parse_args, report

args = parse_args("exact_numpy")
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy.special import ndtr, owens_t  # noqa: E402


def pdf(t):
    return np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def bvn_cdf(h, k, rho):
    """Φ₂(h, k; ρ) for |ρ| < 1 by Owen (1956): ½Φ(h) + ½Φ(k) − T(h, a_h) − T(k, a_k) − β."""
    rb = np.sqrt((1 - rho) * (1 + rho))
    with np.errstate(divide="ignore", invalid="ignore"):
        a_h = (k - rho * h) / (h * rb)
        a_k = (h - rho * k) / (k * rb)
    beta = np.where((h * k < 0) | ((h * k == 0) & (h + k < 0)), 0.5, 0.0)
    return 0.5 * ndtr(h) + 0.5 * ndtr(k) - owens_t(h, a_h) - owens_t(k, a_k) - beta


def expected_loss(x, y, w, a, kappa):
    m = w.shape[0]
    v = x[:, None, :] * w[None, :, :]  # (n, m, d): u_r = v_rᵀc
    z = v.sum(-1)
    norm = np.linalg.norm(v, axis=-1)
    s = kappa * norm
    al = z / s
    mean = z * ndtr(al) + s * pdf(al)
    f_tilde = mean @ a / math.sqrt(m)
    rho = np.einsum("nrd,nqd->nrq", v, v) / (norm[:, :, None] * norm[:, None, :])
    eye = np.eye(m, dtype=bool)[None]
    rho = np.where(eye, 0.0, np.clip(rho, -1 + 1e-15, 1 - 1e-15))
    A, B = al[:, :, None], al[:, None, :]
    rb = np.sqrt(1 - rho * rho)
    ta, tb = (A - rho * B) / rb, (B - rho * A) / rb
    unit = ((A * B + rho) * bvn_cdf(A, B, rho) + A * pdf(B) * ndtr(ta)
            + B * pdf(A) * ndtr(tb) + rb * pdf(A) * pdf(tb))
    moment = unit * s[:, :, None] * s[:, None, :]
    second = (z * z + s * s) * ndtr(al) + z * s * pdf(al)
    moment = np.where(eye, second[:, :, None], moment)
    cov = moment - mean[:, :, None] * mean[:, None, :]
    var = np.einsum("nrq,r,q->n", cov, a, a) / m
    return 0.5 * float(((f_tilde - y) ** 2).sum() + var.sum())


x, y, w, a = load(np, args.problem)
start = time.perf_counter()
values = [expected_loss(x, y, w, a, k) for k in args.kappa_list]
seconds = time.perf_counter() - start
report("numpy-scipy", f"numpy {np.__version__}, scipy {scipy.__version__}", seconds, values)
