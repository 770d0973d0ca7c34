// caffe_temperature._native: the parts of the plugin and of Caffe that the
// Python tools need and pycaffe does not expose.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

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

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Native helpers of caffe_temperature (linked to libcaffe).";
  m.def("layer_types", &caffe_temperature::RegisteredLayerTypes,
        "Layer types the plugin has registered with Caffe in this process.");
  m.def("upgrade_net", &UpgradeNet, py::arg("serialized"),
        py::arg("name") = "<net>",
        "Run Caffe's UpgradeNetAsNeeded on a serialized NetParameter; "
        "returns (serialized upgraded net, whether it needed upgrading).");
}
