#ifndef CAFFE_TEMPERATURE_TESTS_CUDA_ON_HIP_CPU_HPP_
#define CAFFE_TEMPERATURE_TESTS_CUDA_ON_HIP_CPU_HPP_

// Included ahead of every translated file of cuda/ (-include): the CUDA
// names the kernels use, mapped onto HIP-CPU's. Launches are rewritten at
// build time instead (cmake/hip_cpu_translate.cmake): `<<<...>>>` is syntax,
// which no declaration here can provide.

#include <hip/hip_runtime.h>

#include <cmath>

// HIP-CPU asks GCC for SIMD clones of every kernel, which GCC refuses (with a
// warning per kernel and type) for struct arguments such as the shapes and
// functors here; the clones only speed up emulation.
#undef __global__
#define __global__ __attribute__((flatten))

// CUDA declares the device maths in the global namespace.
using std::isfinite;

using cudaError_t = hipError_t;
constexpr hipError_t cudaSuccess = hipSuccess;

inline cudaError_t cudaPeekAtLastError() { return hipPeekAtLastError(); }
inline const char* cudaGetErrorString(cudaError_t error) {
  return hipGetErrorString(error);
}

// The device the emulation stands for: an H100's multiprocessor count and
// per-block shared memory (opt-in), which is what the dispatch of cuda/
// asks for, so that the test's shapes reach the same paths as on one.
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount,
  cudaDevAttrMaxSharedMemoryPerBlockOptin
};
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value,
                                          cudaDeviceAttr attribute, int) {
  *value = attribute == cudaDevAttrMultiProcessorCount ? 132 : 232448;
  return cudaSuccess;
}

// HIP-CPU's dynamic shared memory has no limit to opt out of.
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel, cudaFuncAttribute, int) {
  return cudaSuccess;
}
#define CT_DYNAMIC_SHARED(type, name) HIP_DYNAMIC_SHARED(type, name)

// HIP-CPU has only the mask-less shuffle. Its warps are 64 lanes wide, but
// the kernels shuffle with offsets below 32 inside their own 32-lane groups,
// which behaves as on a 32-lane GPU.
template <typename T>
inline T __shfl_xor_sync(unsigned, T value, int offset) {
  return __shfl_xor(value, offset);
}

#endif  // CAFFE_TEMPERATURE_TESTS_CUDA_ON_HIP_CPU_HPP_
