// caffe_temperature._native: the parts of the plugin and of Caffe that the
// Python tools need and pycaffe does not expose.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <initializer_list>
#include <limits>
#include <string>

#include "_native_limit.hpp"

// upgrade_proto.hpp uses `string` unqualified; common.hpp brings it in.
#include "caffe/common.hpp"
#include "caffe/util/upgrade_proto.hpp"
#include "caffe_temperature/plugin.hpp"

namespace py = pybind11;

namespace {

// Takes and returns a serialized caffe.NetParameter, so that Python works on
// its own caffe_pb2 objects; returns (net, whether it was upgraded).
py::tuple UpgradeNet(const py::bytes& serialized, const std::string& name) {
  caffe::NetParameter net;
  if (!net.ParseFromString(std::string(serialized))) {
    throw py::value_error("not a serialized caffe.NetParameter");
  }
  const bool needed = caffe::NetNeedsUpgrade(net);
  if (needed && !caffe::UpgradeNetAsNeeded(name, &net)) {
    throw py::value_error(name + ": Caffe could not upgrade this net "
                          "(see the log above for the layer it refused)");
  }
  std::string out;
  net.SerializeToString(&out);
  return py::make_tuple(py::bytes(out), needed);
}

template <typename Dtype>
using Array = py::array_t<Dtype, py::array::c_style>;

// The buffers must be C-contiguous arrays of one dtype and one size: never a
// converted copy, which would take the writes and be thrown away.
template <typename Dtype>
std::size_t CheckedSize(std::size_t block, std::initializer_list<const Array<Dtype>*> arrays) {
  if (block == 0) throw py::value_error("block must be >= 1");
  const std::size_t n = static_cast<std::size_t>((*arrays.begin())->size());
  for (const Array<Dtype>* a : arrays) {
    if (static_cast<std::size_t>(a->size()) != n) {
      throw py::value_error("the arrays must have the same number of elements");
    }
  }
  if (n / block >= static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw py::value_error("too many blocks: make block larger");
  }
  return n;
}

template <typename Dtype>
void LimitForward(const Array<Dtype>& x, Array<Dtype>& y, std::size_t block) {
  const std::size_t n = CheckedSize<Dtype>(block, {&x, &y});
  Dtype* out = y.mutable_data();
  py::gil_scoped_release release;
  if (n > 0) caffe_temperature_native::LimitForward(x.data(), out, n, block);
}

template <typename Dtype>
void LimitBackward(const Array<Dtype>& y, const Array<Dtype>& dy, Array<Dtype>& dx,
                   std::size_t block) {
  const std::size_t n = CheckedSize<Dtype>(block, {&y, &dy, &dx});
  Dtype* out = dx.mutable_data();
  py::gil_scoped_release release;
  if (n > 0) caffe_temperature_native::LimitBackward(y.data(), dy.data(), out, n, block);
}

float MemoryPass(const Array<float>& in, Array<float>& out) {
  const std::size_t n_in = static_cast<std::size_t>(in.size());
  const std::size_t n_out = static_cast<std::size_t>(out.size());
  if (n_out > n_in) {
    throw py::value_error("the output must not be larger than the input");
  }
  float* written = out.mutable_data();
  py::gil_scoped_release release;
  return n_in > 0 ? caffe_temperature_native::MemoryPass(in.data(), n_in, written, n_out) : 0.0f;
}

template <typename Dtype>
void DefineLimits(py::module_& m) {
  m.def("limit_forward", &LimitForward<Dtype>, py::arg("x").noconvert(),
        py::arg("y").noconvert(), py::arg("block"),
        "The benchmark's exp floor, forward: for each block of `block` values, a "
        "max pass over x, a vector-exp pass writing y and summing it, and a "
        "pass scaling y (built with the kernels' -ffast-math flags).");
  m.def("limit_backward", &LimitBackward<Dtype>, py::arg("y").noconvert(),
        py::arg("dy").noconvert(), py::arg("dx").noconvert(), py::arg("block"),
        "The benchmark's exp floor, backward: for each block, a pass for dot(y, dy) "
        "and one writing dx = y * (dy - dot).");
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Native helpers of caffe_temperature (linked to libcaffe).";
  m.def("layer_types", &caffe_temperature::RegisteredLayerTypes,
        "Layer types the plugin has registered with Caffe in this process.");
  m.def("upgrade_net", &UpgradeNet, py::arg("serialized"),
        py::arg("name") = "<net>",
        "Run Caffe's UpgradeNetAsNeeded on a serialized NetParameter; "
        "returns (serialized upgraded net, whether it needed upgrading).");
  // glog reads GLOG_minloglevel once, when libglog is loaded (by pycaffe,
  // before any tool runs): the tools set the level here instead.
  m.def("set_min_log_level", [](int level) { FLAGS_minloglevel = level; },
        py::arg("level"),
        "Set glog's minimum level (0 INFO .. 3 FATAL) in this process.");
  DefineLimits<float>(m);
  DefineLimits<double>(m);
  m.def("memory_pass", &MemoryPass, py::arg("input").noconvert(),
        py::arg("output").noconvert(),
        "The benchmark's memory floor: reads all of `input` once and writes "
        "all of `output` (no larger), a copy of input's first values; "
        "returns the sum of the values read and not copied.");
}
