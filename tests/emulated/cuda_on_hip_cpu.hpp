#ifndef CAFFE_TEMPERATURE_TESTS_CUDA_ON_HIP_CPU_HPP_
#define CAFFE_TEMPERATURE_TESTS_CUDA_ON_HIP_CPU_HPP_

// Included ahead of every translated file of cuda/ (-include): the CUDA
// names the kernels use, mapped onto HIP-CPU's. Launches are rewritten at
// build time instead (cmake/hip_cpu_translate.cmake): `<<<...>>>` is syntax,
// which no declaration here can provide.

#include <hip/hip_runtime.h>

#include <cmath>
#include <memory>
#include <utility>

#include "launch_rules.hpp"
#include "traffic.hpp"

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

// The device the emulation stands for (launch_rules.hpp): the
// multiprocessor count and per-block shared memory (opt-in) of one GPU of the
// architecture CAFFE_TEMPERATURE_EMULATED_ARCH names, which is what the
// dispatch of cuda/ asks for, so that the test's shapes reach the paths they
// reach on one.
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
  const ct_emulation::Arch& arch = ct_emulation::Device();
  *value = attribute == cudaDevAttrMultiProcessorCount
               ? arch.multiprocessors
               : static_cast<int>(arch.optin_shared);
  return cudaSuccess;
}

// Recorded per kernel, and checked at its launches (launch_rules.hpp).
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute,
                                 int bytes) {
  if (bytes < 0) return hipErrorInvalidValue;
  ct_emulation::SetOptIn(reinterpret_cast<const void*>(kernel),
                         static_cast<size_t>(bytes));
  return cudaSuccess;
}

// Every launch goes through the rules of launch_rules.hpp: HIP-CPU's own
// macro, with the launch recorded first and made current in each block.
#undef hipLaunchKernelGGL
#define hipLaunchKernelGGL(kernel_name, num_blocks, dim_blocks,             \
                           group_mem_bytes, stream, ...)                    \
  if (true) {                                                               \
    const std::shared_ptr<::ct_emulation::Launch> ct_launch_ =              \
        ::ct_emulation::NewLaunch(                                          \
            reinterpret_cast<const void*>(kernel_name), dim3(num_blocks),   \
            dim3(dim_blocks), (group_mem_bytes));                           \
    ::hip::detail::launch(                                                  \
        num_blocks, dim_blocks, group_mem_bytes, stream,                    \
        [=](auto&&... xs) noexcept {                                        \
          ::ct_emulation::current_launch = ct_launch_.get();                \
          kernel_name(std::forward<decltype(xs)>(xs)...);                   \
        },                                                                  \
        std::make_tuple(__VA_ARGS__));                                      \
  } else                                                                    \
    ((void)0)

// Written by the translation at the entry of each kernel, in place of its
// __launch_bounds__(max threads, min blocks per multiprocessor).
#define CT_KERNEL_ENTRY(max_threads, min_blocks) \
  ::ct_emulation::EnterKernel(__PRETTY_FUNCTION__, (max_threads))

// A static shared array (cuda/launch.cuh), its size told to the launch rules.
#define CT_STATIC_SHARED(type, name, count)          \
  static const char ct_site_##name##_ = 0;           \
  thread_local type name[count];                     \
  ::ct_emulation::StaticShared(&ct_site_##name##_, sizeof(name))

#define __syncthreads ::ct_emulation::Barrier

#define CT_DYNAMIC_SHARED(type, name) HIP_DYNAMIC_SHARED(type, name)

// HIP-CPU has only the mask-less shuffle. Its warps are 64 lanes wide, but
// the kernels shuffle with offsets below 32 inside their own 32-lane groups,
// which behaves as on a 32-lane GPU.
template <typename T>
inline T __shfl_xor_sync(unsigned, T value, int offset) {
  return __shfl_xor(value, offset);
}

#endif  // CAFFE_TEMPERATURE_TESTS_CUDA_ON_HIP_CPU_HPP_
