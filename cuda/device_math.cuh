#ifndef CAFFE_TEMPERATURE_CUDA_DEVICE_MATH_CUH_
#define CAFFE_TEMPERATURE_CUDA_DEVICE_MATH_CUH_

#include <cmath>

namespace caffe_temperature {

// The full-precision exp/log: __expf loses about one ulp per unit of its
// argument, and b (x - m) reaches -87 before the result underflows.
// Plain inline, here and for the other non-template device functions of
// cuda/'s headers: HIP-CPU's __forceinline__ is not `inline` in builds
// without NDEBUG, which would define them once per file.
__device__ inline float Exp(float z) { return expf(z); }
__device__ inline double Exp(double z) { return exp(z); }
__device__ inline float Log(float z) { return logf(z); }
__device__ inline double Log(double z) { return log(z); }

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_CUDA_DEVICE_MATH_CUH_
