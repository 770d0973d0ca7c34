#ifndef CAFFE_TEMPERATURE_REFERENCE_KERNELS_HPP_
#define CAFFE_TEMPERATURE_REFERENCE_KERNELS_HPP_

// Plain versions of the CPU kernels of softmax_kernels.hpp: the same
// functions, with the same contracts, written as the formulas of
// docs/spec.md read, one position at a time in scalar IEEE arithmetic, on
// one thread. The C++ tests compare the layers with them (in double), and a
// build with -DCAFFE_TEMPERATURE_REFERENCE_KERNELS=ON runs the layers on
// them, to tell a bug of the fast kernels from one elsewhere.
#include <vector>

#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe_temperature {
namespace reference {

// The same declarations as the fast kernels'; DistillationForwardCPU's
// scratch is left untouched.
#include "caffe_temperature/cpu_kernel_declarations.inc"

}  // namespace reference
}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_REFERENCE_KERNELS_HPP_
