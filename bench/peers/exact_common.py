"""Shared by the workload-(d) peers: read the problem `gaussmask-exact problem` wrote and print
the report line. Each peer evaluates E_c L = ½ Σ_i [(f̃_i − y_i)² + V_i] (SPEC §3(A)) at every κ
with the closed form: smoothed ReLU means, and the moments M_rq = E[u_r⁺u_q⁺] through the
bivariate normal CDF Φ₂ for every (sample, neuron pair). Only the evaluation is timed."""

import argparse
import json
import sys


def parse_args(name):
    p = argparse.ArgumentParser(description=f"{name}: workload (d), the exact expected loss")
    p.add_argument("--problem", required=True, help="JSON written by `gaussmask-exact problem`")
    p.add_argument("--kappas", required=True, help="comma-separated κ values (> 0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cuda", dest="device_cuda", action="store_true", help="run on the GPU")
    args = p.parse_args()
    args.kappa_list = [float(k) for k in args.kappas.split(",")]
    return args


def load(np, path):
    with open(path) as f:
        p = json.load(f)
    n, d, m = p["n"], p["d"], p["m"]
    arr = lambda key, shape: np.asarray(p[key], dtype=np.float64).reshape(shape)
    return arr("x", (n, d)), arr("y", (n,)), arr("w", (m, d)), arr("a", (m,))


def report(name, version, seconds, values):
    print(json.dumps({"peer": name, "version": version, "seconds": seconds, "values": values}))
    sys.stdout.flush()
