"""caffe-temperature: temperature softmax, infogain and distillation layers for Caffe.

Where pycaffe is importable, ``import caffe_temperature`` loads the compiled
plugin into this process, after which pycaffe builds nets that use
``TemperatureSoftmax``, ``SoftmaxWithInfogainLoss`` and
``SoftmaxWithDistillationLoss``::

    import caffe
    import caffe_temperature  # noqa: F401  (registers the layers)
    net = caffe.Net("deploy.prototxt", caffe.TEST)

Where it is not (or in a package built with CAFFE_TEMPERATURE_PLUGIN=OFF),
the import loads nothing and the tools that need no Caffe work (the stock-layer
rewrite of add_temperature, sampling, the infogain matrix builder, calibration
from saved logits); ``load_plugin()``, ``layer_types()`` and
``from caffe_temperature import _native`` then raise a PluginLoadError that says why.

The Python API (docs/api.md), imported on first use so that the package import stays light:
``add_temperature`` and ``reconcile_weights`` (a deploy net and its model with a temperature),
``fit_temperature`` and ``expected_calibration_error`` (temperature scaling on arrays),
``infogain_matrix`` (H for SoftmaxWithInfogainLoss) and ``sample`` (draws from softmax(z / T)).
"""

from __future__ import annotations

from caffe_temperature._loader import PluginLoadError, load_plugin, plugin_available, plugin_path

__version__ = "0.1.0"
# The public functions, by the module that defines them.
_API = {
    "add_temperature": "caffe_temperature.rewrite",
    "reconcile_weights": "caffe_temperature.saved_model",
    "fit_temperature": "caffe_temperature.calibration",
    "expected_calibration_error": "caffe_temperature.calibration",
    "infogain_matrix": "caffe_temperature.infogain",
    "sample": "caffe_temperature.sampling",
}
__all__ = ["PluginLoadError", "load_plugin", "plugin_available", "plugin_path", "layer_types", *_API]

_PLUGIN = load_plugin() if plugin_available() else None


def layer_types() -> list[str]:
    """Layer types the plugin registered with Caffe in this process (loads it first)."""
    load_plugin()
    # The pybind11 module links the plugin, so it is imported only once the
    # loader has checked which Caffe is in the process.
    from caffe_temperature import _native  # type: ignore[attr-defined]  # built by CMake

    return list(_native.layer_types())


def __getattr__(name: str):
    # `from caffe_temperature import _native` loads the plugin first (or says why it cannot);
    # the API's functions are imported on first use, so that the package import stays light.
    import importlib

    if name == "_native":
        load_plugin()
        return importlib.import_module("caffe_temperature._native")
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'caffe_temperature' has no attribute {name!r}")
