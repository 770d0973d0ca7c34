"""pycaffe against the Caffe that a build chose: that libcaffe is the one in the
process, the plugin registers its three layers there, and a net made of them
runs forward and backward, its values checked against numpy.

    python pycaffe_smoke.py LIBCAFFE

with that Caffe's pycaffe and the source tree's python/ on PYTHONPATH, and
CAFFE_TEMPERATURE_LIBRARY naming the plugin built against it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

BETA = 0.5  # T = 2
NET = f"""
name: "smoke"
force_backward: true
layer {{ name: "in" type: "Input" top: "x" top: "teacher" top: "label" top: "H"
  input_param {{ shape {{ dim: 2 dim: 5 }} shape {{ dim: 2 dim: 5 }} shape {{ dim: 2 }} shape {{ dim: 5 dim: 5 }} }} }}
layer {{ name: "prob" type: "TemperatureSoftmax" bottom: "x" top: "prob"
  scale_param {{ filler {{ type: "constant" value: {BETA} }} }} }}
layer {{ name: "infogain" type: "SoftmaxWithInfogainLoss" bottom: "x" bottom: "label" bottom: "H"
  top: "infogain" propagate_down: true propagate_down: false propagate_down: false }}
layer {{ name: "distill" type: "SoftmaxWithDistillationLoss" bottom: "x" bottom: "teacher"
  top: "distill" propagate_down: true propagate_down: false
  scale_param {{ filler {{ type: "constant" value: {BETA} }} }} }}
"""
LAYERS = {"TemperatureSoftmax", "SoftmaxWithInfogainLoss", "SoftmaxWithDistillationLoss"}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def loaded_libcaffe() -> set[Path]:
    lines = Path("/proc/self/maps").read_text().splitlines()
    return {Path(line.split()[-1]).resolve() for line in lines if "/libcaffe.so" in line}


def expected_values(x, teacher, label, H) -> dict[str, np.ndarray]:
    """docs/spec.md's formulas; both losses are normalized by the 2 positions (VALID)."""
    q = softmax(x)
    h = H[label]
    infogain = -(h * np.log(q)).sum() / 2
    d_infogain = (h.sum(axis=1, keepdims=True) * q - h) / 2
    p, qt = softmax(BETA * teacher), softmax(BETA * x)
    temperature = 1 / BETA
    distill = temperature**2 * (p * (np.log(p) - np.log(qt))).sum() / 2
    d_distill = temperature * (qt - p) / 2
    return {"prob": softmax(BETA * x), "infogain": infogain, "distill": distill, "x_diff": d_infogain + d_distill}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libcaffe", type=Path)
    args = parser.parse_args()

    import caffe

    import caffe_temperature  # noqa: F401  (registers the layers)

    assert loaded_libcaffe() == {args.libcaffe.resolve()}, (loaded_libcaffe(), args.libcaffe)
    missing = LAYERS - set(caffe.layer_type_list())
    assert not missing, f"not registered: {missing}"

    caffe.set_mode_cpu()
    rng = np.random.default_rng(3)
    inputs = {"x": rng.normal(size=(2, 5)) * 3, "teacher": rng.normal(size=(2, 5)) * 3,
              "label": np.array([1.0, 4.0]), "H": rng.uniform(0.1, 2.0, size=(5, 5))}
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as prototxt:
        prototxt.write(NET)
        prototxt.flush()
        net = caffe.Net(prototxt.name, caffe.TRAIN)
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    net.forward()
    net.backward()
    got = {"prob": net.blobs["prob"].data, "infogain": net.blobs["infogain"].data,
           "distill": net.blobs["distill"].data, "x_diff": net.blobs["x"].diff}
    want = expected_values(inputs["x"], inputs["teacher"], inputs["label"].astype(int), inputs["H"])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)
    print(f"PASS: {sorted(LAYERS)} registered with {args.libcaffe}; a net of them matches numpy")


if __name__ == "__main__":
    main()
