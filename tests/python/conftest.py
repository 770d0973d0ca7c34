"""Shared fixtures: a real pycaffe with the plugin loaded, and Caffe's sources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

CACHE = Path(os.environ.get("CAFFE_TEMPERATURE_CACHE", Path.home() / ".cache" / "caffe-temperature"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def caffe():
    """pycaffe, in CPU mode, with the plugin's layers registered."""
    import caffe as pycaffe

    import caffe_temperature  # noqa: F401  (registers the layers)

    pycaffe.set_mode_cpu()
    return pycaffe


@pytest.fixture(scope="session")
def caffe_source_dir() -> Path:
    """BVLC Caffe's source tree as scripts/setup.sh extracted it (models/, examples/)."""
    override = os.environ.get("CAFFE_SOURCE_DIR")
    candidates = [Path(override)] if override else sorted((CACHE / "src").glob("caffe-*"))
    for candidate in candidates:
        if (candidate / "models").is_dir():
            return candidate
    pytest.skip("Caffe's source tree is not available (set CAFFE_SOURCE_DIR)")


@pytest.fixture
def make_net(caffe, tmp_path: Path) -> Callable[..., object]:
    """Builds a caffe.Net from prototxt text."""
    counter = iter(range(1_000_000))

    def build(text: str, phase: int | None = None, weights: str | None = None):
        path = tmp_path / f"net{next(counter)}.prototxt"
        path.write_text(text)
        phase = caffe.TEST if phase is None else phase
        if weights:
            return caffe.Net(str(path), phase, weights=weights)
        return caffe.Net(str(path), phase)

    return build
