#ifndef CAFFE_TEMPERATURE_CUDA_LAUNCH_CUH_
#define CAFFE_TEMPERATURE_CUDA_LAUNCH_CUH_

// The one place where the plugin launches a kernel. tests/emulated builds
// cuda/ against HIP-CPU by rewriting this launch into hipLaunchKernelGGL
// (cmake/hip_cpu_translate.cmake, which fails on any launch it cannot
// rewrite), so every kernel must go through Launch.

#include <glog/logging.h>

#include <cstddef>
#include <cstdint>

// A static shared array. Every kernel declares its static shared memory
// through this macro, which the emulated test defines first so that its
// launch rules count the bytes (tests/emulated/launch_rules.hpp; the
// translation refuses any other static shared array).
#ifndef CT_STATIC_SHARED
#define CT_STATIC_SHARED(type, name, count) __shared__ type name[count]
#endif

// Counts a kernel's global traffic of row elements, in bytes: the emulated
// test defines it first to add them up (tests/emulated/traffic.hpp); on a
// GPU it is nothing.
#ifndef CT_COUNT_GLOBAL
#define CT_COUNT_GLOBAL(read_bytes, written_bytes)
#endif

// Every kernel is declared `__launch_bounds__(its largest launch, 1)`: the
// bound lets ptxas budget registers for that many threads (the emulated test
// fails a launch above it), and the second figure, one block per
// multiprocessor, keeps it from trading registers for a second resident
// block: without it CUDA 13's ptxas gave the double block rows 32 registers
// and spilled.

namespace caffe_temperature {

const int kThreads = 256;
const int kMaxThreadsPerBlock = 1024;
// Enough blocks of `per_block` threads for `threads` threads. Every grid
// covers its work in one pass, one thread, warp or block per item: the
// largest, a warp per row for INT_MAX rows in blocks of 128, is 2^29 blocks,
// within CUDA's 2^31 - 1.
inline int BlocksFor(int64_t threads, int per_block = kThreads) {
  return static_cast<int>((threads + per_block - 1) / per_block);
}

inline void CheckCuda(cudaError_t error, const char* what) {
  CHECK(error == cudaSuccess) << what << " failed: "
                              << cudaGetErrorString(error);
}

// An attribute of the current device, asked at each call rather than
// remembered: each solver thread may drive another device.
inline int DeviceAttribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  CheckCuda(cudaGetDevice(&device), "cudaGetDevice");
  CheckCuda(cudaDeviceGetAttribute(&value, attribute, device),
            "cudaDeviceGetAttribute");
  return value;
}

// Launches kernel on the default stream with `shared_bytes` of dynamic
// shared memory; a zero-block grid (nothing to do) is skipped rather than
// reported by CUDA as an invalid configuration.
template <typename... Params, typename... Args>
void LaunchWithShared(void (*kernel)(Params...), int blocks, int threads,
                      size_t shared_bytes, const Args&... args) {
  if (blocks == 0) return;
  kernel<<<blocks, threads, shared_bytes>>>(args...);
  CheckCuda(cudaPeekAtLastError(), "kernel launch");
}

template <typename... Params, typename... Args>
void Launch(void (*kernel)(Params...), int blocks, int threads,
            const Args&... args) {
  LaunchWithShared(kernel, blocks, threads, 0, args...);
}

// The global index of this thread, in 64 bits: blockIdx.x * blockDim.x
// alone wraps from 2^31 threads (2^26 rows at a warp per row).
__device__ inline int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// A load and a store of row elements in global memory: the cached rows'
// (register_row.cuh, cached_row.cuh) and the multi-pass ops' go through
// these, so that the emulated test can count them. The per-vector scalars
// (beta, labels, statistics) and H's rows are read and written directly.
template <typename T>
__device__ __forceinline__ T LoadGlobal(const T* p) {
  CT_COUNT_GLOBAL(sizeof(T), 0);
  return *p;
}

template <typename T>
__device__ __forceinline__ void StoreGlobal(T* p, const T& value) {
  CT_COUNT_GLOBAL(0, sizeof(T));
  *p = value;
}

// *target = value from the device, ordered with the kernels around it (a
// host copy would wait for them).
template <typename T>
__global__ void __launch_bounds__(1, 1) SetKernel(T* target, T value) {
  *target = value;
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_CUDA_LAUNCH_CUH_
