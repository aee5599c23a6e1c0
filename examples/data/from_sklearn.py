#!/usr/bin/env python3
"""Writes diabetes.csv and breast_cancer.csv (a header row, one sample per row) from the data
files that scikit-learn ships inside its package, without importing scikit-learn.

    python3 examples/data/from_sklearn.py [SKLEARN_WHEEL_OR_PACKAGE_DIR] [OUT_DIR]

The source is a scikit-learn wheel (`pip download --no-deps scikit-learn==1.9.1`), an unpacked
`sklearn` package directory, or, by default, the installed package (`pip install scikit-learn`
or Debian's python3-sklearn). OUT_DIR defaults to this script's directory. The output is
byte-identical for the same scikit-learn data files.
"""

import csv
import gzip
import importlib.util
import io
import os
import sys
import zipfile

PARTS = ["radius", "texture", "perimeter", "area", "smoothness", "compactness",
         "concavity", "concave_points", "symmetry", "fractal_dimension"]
CANCER_FEATURES = ([f"mean_{p}" for p in PARTS] + [f"{p}_error" for p in PARTS]
                   + [f"worst_{p}" for p in PARTS])
DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def reader(source):
    """A function from a file name under sklearn/datasets/data/ to its bytes."""
    if source is None:
        spec = importlib.util.find_spec("sklearn")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("error: scikit-learn is not installed; give a wheel or package directory")
        source = list(spec.submodule_search_locations)[0]
    if source.endswith(".whl"):
        wheel = zipfile.ZipFile(source)
        return lambda name: wheel.read(f"sklearn/datasets/data/{name}")
    base = os.path.join(source, "datasets", "data")
    if not os.path.isdir(base):
        base = os.path.join(source, "sklearn", "datasets", "data")

    def read(name):
        with open(os.path.join(base, name), "rb") as f:
            return f.read()
    return read


def number(text):
    """The value as written, without a float's trailing zeros ("151", "0.0381")."""
    v = float(text)
    return str(int(v)) if v == int(v) else repr(v)


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(f"wrote {path} ({len(rows)} rows, {len(header)} columns)")


def main():
    args = sys.argv[1:]
    read = reader(args[0] if args else None)
    out = args[1] if len(args) > 1 else os.path.dirname(os.path.abspath(__file__))

    x = gzip.decompress(read("diabetes_data_raw.csv.gz")).decode().split("\n")
    y = gzip.decompress(read("diabetes_target.csv.gz")).decode().split("\n")
    x = [line.split() for line in x if line.strip()]
    y = [line.strip() for line in y if line.strip()]
    assert len(x) == len(y) == 442 and all(len(r) == 10 for r in x)
    write(os.path.join(out, "diabetes.csv"), DIABETES_FEATURES + ["progression"],
          [[number(v) for v in r] + [number(t)] for r, t in zip(x, y)])

    lines = list(csv.reader(io.StringIO(read("breast_cancer.csv").decode())))
    n, d, *names = lines[0]
    body = lines[1:]
    assert int(n) == len(body) == 569 and int(d) == 30 and names == ["malignant", "benign"]
    write(os.path.join(out, "breast_cancer.csv"), CANCER_FEATURES + ["diagnosis"],
          [r[:30] + [names[int(r[30])]] for r in body])


if __name__ == "__main__":
    main()
