#ifndef CAFFE_TEMPERATURE_SRC_LAYER_KERNELS_HPP_
#define CAFFE_TEMPERATURE_SRC_LAYER_KERNELS_HPP_

// The CPU kernels the layers call (internal to src/): the fast ones, or,
// in a build with -DCAFFE_TEMPERATURE_REFERENCE_KERNELS=ON, the plain ones
// of reference_kernels.hpp, which have the same names and contracts.
#include "caffe_temperature/reference_kernels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe_temperature {
#ifdef CAFFE_TEMPERATURE_REFERENCE_KERNELS
namespace layer_kernels = ::caffe_temperature::reference;
#else
namespace layer_kernels = ::caffe_temperature;
#endif
}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SRC_LAYER_KERNELS_HPP_
