#ifndef CAFFE_TEMPERATURE_PLUGIN_HPP_
#define CAFFE_TEMPERATURE_PLUGIN_HPP_

#include <string>
#include <vector>

namespace caffe_temperature {

// The layer types this plugin adds to Caffe's registry, in the order of
// docs/spec.md. Those not (yet) registered in this process are left out.
std::vector<std::string> RegisteredLayerTypes();

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_PLUGIN_HPP_
