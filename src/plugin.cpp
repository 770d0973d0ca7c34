#include <algorithm>
#include <string>
#include <vector>

#include "caffe/layer_factory.hpp"
#include "caffe_temperature/plugin.hpp"

namespace caffe_temperature {

std::vector<std::string> RegisteredLayerTypes() {
  static const char* const kTypes[] = {
      "TemperatureSoftmax", "SoftmaxWithInfogainLoss",
      "SoftmaxWithDistillationLoss"};
  const std::vector<std::string> known =
      caffe::LayerRegistry<float>::LayerTypeList();
  std::vector<std::string> types;
  for (const char* type : kTypes) {
    if (std::find(known.begin(), known.end(), type) != known.end()) {
      types.push_back(type);
    }
  }
  return types;
}

}  // namespace caffe_temperature
