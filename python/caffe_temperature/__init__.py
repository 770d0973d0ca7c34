"""caffe-temperature: temperature softmax, infogain and distillation layers for Caffe.

``import caffe_temperature`` loads the compiled plugin into this process, after
which pycaffe builds nets that use ``TemperatureSoftmax``,
``SoftmaxWithInfogainLoss`` and ``SoftmaxWithDistillationLoss``::

    import caffe
    import caffe_temperature  # noqa: F401  (registers the layers)
    net = caffe.Net("deploy.prototxt", caffe.TEST)
"""

from __future__ import annotations

from caffe_temperature._loader import load_plugin, plugin_path

__version__ = "0.1.0"
__all__ = ["load_plugin", "plugin_path", "layer_types", "sample"]

_PLUGIN = load_plugin()

# The pybind11 module links the plugin, so it is imported only once the loader
# has checked which Caffe is in the process.
from caffe_temperature import _native  # type: ignore[attr-defined]  # noqa: E402  (built by CMake)
from caffe_temperature.sampling import sample  # noqa: E402


def layer_types() -> list[str]:
    """Layer types the plugin registered with Caffe in this process."""
    return list(_native.layer_types())
