#ifndef CAFFE_TEMPERATURE_TESTS_LAUNCH_RULES_HPP_
#define CAFFE_TEMPERATURE_TESTS_LAUNCH_RULES_HPP_

// What the CUDA runtime and the hardware enforce at a launch and HIP-CPU does
// not: block and grid dimensions, the kernel's __launch_bounds__, shared
// memory per block (48 KiB without opting in, the architecture's opt-in
// maximum less the static part with it) and barriers reached by every thread
// of a block from one place. Included by cuda_on_hip_cpu.hpp; the device is
// one GPU of the architecture that CAFFE_TEMPERATURE_EMULATED_ARCH names
// (default 90). A launch that breaks a rule stops the test with the kernel,
// the rule and the figures: on a GPU the launch would fail, or hang.
//
// Where each figure is learnt:
// - the grid, the block and the dynamic shared memory, at the launch
//   (hipLaunchKernelGGL, redefined in cuda_on_hip_cpu.hpp);
// - the opt-in, at cudaFuncSetAttribute, per kernel;
// - the kernel's name and __launch_bounds__, at its entry, which
//   cmake/hip_cpu_translate.cmake writes in place of the attribute
//   (CT_KERNEL_ENTRY; it refuses a kernel without one);
// - the static shared memory, from the kernel's own declarations
//   (CT_STATIC_SHARED: the translation refuses any other static __shared__
//   array), as each is first reached in a launch.

#include <hip/hip_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ct_emulation {

// One GPU of an architecture: the shared memory a block may opt in to
// (CUDA C++ Programming Guide, technical specifications per compute
// capability) and the multiprocessor count of a common card of it, which the
// dispatch of cuda/ asks for.
struct Arch {
  int sm;
  const char* card;
  int multiprocessors;
  size_t optin_shared;
};

inline constexpr Arch kArchs[] = {
    {75, "T4", 40, 64 * 1024},        {80, "A100", 108, 163 * 1024},
    {86, "RTX 3090", 82, 99 * 1024},  {89, "L4", 58, 99 * 1024},
    {90, "H100 SXM", 132, 227 * 1024},
};

// The same on every architecture from sm_75 up.
inline constexpr size_t kSharedWithoutOptIn = 48 * 1024;
inline constexpr unsigned kMaxThreadsPerBlock = 1024;
inline constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
inline constexpr unsigned kMaxGridDim[3] = {2147483647u, 65535u, 65535u};

[[noreturn]] inline void Stop(const std::string& message) {
  std::fprintf(stderr, "gpu_kernels_emulated: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

inline const Arch& ArchNamed(const char* name) {
  const char* digits = std::strncmp(name, "sm_", 3) == 0 ? name + 3 : name;
  for (const Arch& arch : kArchs) {
    if (std::to_string(arch.sm) == digits) return arch;
  }
  std::string known;
  for (const Arch& arch : kArchs) known += " " + std::to_string(arch.sm);
  Stop(std::string("CAFFE_TEMPERATURE_EMULATED_ARCH=") + name +
       ": not one of" + known);
}

// The emulated device, chosen once per process.
inline const Arch& Device() {
  static const Arch& arch = [] () -> const Arch& {
    const char* name = std::getenv("CAFFE_TEMPERATURE_EMULATED_ARCH");
    return ArchNamed(name && *name ? name : "90");
  }();
  return arch;
}

inline std::string Figure(size_t bytes) { return std::to_string(bytes); }

// cudaFuncAttributeMaxDynamicSharedMemorySize per kernel (0: not set, the
// default of 48 KiB less the static part applies).
struct OptIns {
  std::mutex mutex;
  std::map<const void*, size_t> bytes;
};

inline OptIns& KernelOptIns() {
  static OptIns opt_ins;
  return opt_ins;
}

inline void SetOptIn(const void* kernel, size_t bytes) {
  OptIns& o = KernelOptIns();
  std::lock_guard<std::mutex> lock(o.mutex);
  o.bytes[kernel] = bytes;
}

inline size_t OptInOf(const void* kernel) {
  OptIns& o = KernelOptIns();
  std::lock_guard<std::mutex> lock(o.mutex);
  const auto found = o.bytes.find(kernel);
  return found == o.bytes.end() ? 0 : found->second;
}

// One launch, as its blocks see it.
struct Launch {
  uint64_t serial;
  dim3 grid;
  dim3 block;
  size_t dynamic_bytes;
  size_t opt_in;  // 0: none
  std::once_flag entered;
  std::string kernel;  // set at the first entry
  std::mutex mutex;
  std::vector<const void*> static_sites;
  size_t static_bytes = 0;
};

inline std::shared_ptr<Launch> NewLaunch(const void* kernel, dim3 grid,
                                         dim3 block, size_t dynamic_bytes) {
  static std::atomic<uint64_t> serial{0};
  auto launch = std::make_shared<Launch>();
  launch->serial = ++serial;
  launch->grid = grid;
  launch->block = block;
  launch->dynamic_bytes = dynamic_bytes;
  launch->opt_in = OptInOf(kernel);
  return launch;
}

// The launch whose block this OS thread runs (HIP-CPU runs a block's threads
// as fibres of one OS thread).
inline thread_local Launch* current_launch = nullptr;

[[noreturn]] inline void Broken(const Launch& launch,
                                const std::string& rule) {
  const Arch& arch = Device();
  Stop("launch rule broken on the emulated sm_" + std::to_string(arch.sm) +
       " (" + arch.card + "): " + launch.kernel + ": " + rule);
}

// "Kernel(...) [with ...]" from GCC's pretty name, without the namespace.
inline std::string KernelName(const char* pretty) {
  const std::string space = "caffe_temperature::";
  std::string name(pretty);
  if (name.compare(0, 5, "void ") == 0) name.erase(0, 5);
  for (size_t at; (at = name.find(space)) != std::string::npos;) {
    name.erase(at, space.size());
  }
  return name;
}

inline void CheckDims(const Launch& launch, const char* what, const dim3& d,
                      const unsigned* limits) {
  const unsigned dims[3] = {d.x, d.y, d.z};
  const char* axes = "xyz";
  for (int a = 0; a < 3; ++a) {
    if (dims[a] < 1 || dims[a] > limits[a]) {
      Broken(launch, std::string(what) + "." + axes[a] + " = " +
                         std::to_string(dims[a]) + ", outside 1.." +
                         std::to_string(limits[a]));
    }
  }
}

// Everything known before the kernel's first static array: the launch's
// figures against the device's and the kernel's __launch_bounds__.
inline void CheckConfiguration(const Launch& launch, unsigned launch_bound) {
  CheckDims(launch, "blockDim", launch.block, kMaxBlockDim);
  CheckDims(launch, "gridDim", launch.grid, kMaxGridDim);
  const uint64_t threads =
      uint64_t{launch.block.x} * launch.block.y * launch.block.z;
  if (threads > kMaxThreadsPerBlock) {
    Broken(launch, "threads per block: " + std::to_string(threads) + " > " +
                       std::to_string(kMaxThreadsPerBlock));
  }
  if (threads > launch_bound) {
    Broken(launch, "threads per block: " + std::to_string(threads) +
                       " > its __launch_bounds__(" +
                       std::to_string(launch_bound) + ")");
  }
  const size_t optin_max = Device().optin_shared;
  if (launch.opt_in > optin_max) {
    Broken(launch, "opted in to " + Figure(launch.opt_in) +
                       " bytes of dynamic shared memory > the device's "
                       "per-block maximum of " + Figure(optin_max));
  }
  const size_t allowed = launch.opt_in ? launch.opt_in : kSharedWithoutOptIn;
  if (launch.dynamic_bytes > allowed) {
    Broken(launch, "dynamic shared memory: " + Figure(launch.dynamic_bytes) +
                       " bytes > " + Figure(allowed) +
                       (launch.opt_in ? " opted in to"
                                      : " without opting in"));
  }
}

// The kernels entered since the last TakeEnteredKernels, each named once,
// for the traffic table of test_traffic_emulated.cpp.
struct EnteredKernels {
  std::mutex mutex;
  std::vector<std::string> names;
};

inline EnteredKernels& Entered() {
  static EnteredKernels entered;
  return entered;
}

inline std::vector<std::string> TakeEnteredKernels() {
  EnteredKernels& entered = Entered();
  std::lock_guard<std::mutex> lock(entered.mutex);
  return std::move(entered.names);
}

// At the entry of every kernel (CT_KERNEL_ENTRY).
inline void EnterKernel(const char* pretty_name, unsigned launch_bound) {
  Launch& launch = *current_launch;
  std::call_once(launch.entered, [&] {
    launch.kernel = KernelName(pretty_name);
    CheckConfiguration(launch, launch_bound);
    const std::string name = launch.kernel.substr(0, launch.kernel.find('('));
    EnteredKernels& entered = Entered();
    std::lock_guard<std::mutex> lock(entered.mutex);
    if (std::find(entered.names.begin(), entered.names.end(), name) ==
        entered.names.end()) {
      entered.names.push_back(name);
    }
  });
}

// A static shared array of `bytes`, declared at `site` (one per declaration
// and kernel), as a thread of the current launch reaches it.
inline void StaticShared(const void* site, size_t bytes) {
  Launch& launch = *current_launch;
  thread_local uint64_t last_serial = 0;
  thread_local const void* last_site = nullptr;
  if (last_serial == launch.serial && last_site == site) return;
  last_serial = launch.serial;
  last_site = site;
  std::lock_guard<std::mutex> lock(launch.mutex);
  const auto& sites = launch.static_sites;
  if (std::find(sites.begin(), sites.end(), site) != sites.end()) return;
  launch.static_sites.push_back(site);
  launch.static_bytes += bytes;
  const std::string figures = "static " + Figure(launch.static_bytes) +
                              " + dynamic " + Figure(launch.dynamic_bytes) +
                              " bytes";
  if (!launch.opt_in &&
      launch.static_bytes + launch.dynamic_bytes > kSharedWithoutOptIn) {
    Broken(launch, "shared memory without opting in: " + figures + " > " +
                       Figure(kSharedWithoutOptIn));
  }
  const size_t optin_max = Device().optin_shared;
  if (launch.opt_in && launch.opt_in + launch.static_bytes > optin_max) {
    Broken(launch, "opted in to " + Figure(launch.opt_in) +
                       " bytes of dynamic shared memory, which with static " +
                       Figure(launch.static_bytes) + " passes the device's " +
                       Figure(optin_max));
  }
}

// __syncthreads: every thread of the block reaches each barrier from the
// same call site. Not inlined, so that its return address is the place in
// the (flattened) kernel that called it: an op called from two branches of a
// kernel reaches the same source line of a reduction from two addresses.
[[gnu::noinline]] inline void Barrier() {
  const void* site = __builtin_return_address(0);
  thread_local uint64_t serial = 0;
  thread_local unsigned arrived = 0;
  thread_local const void* first_site = nullptr;
  Launch& launch = *current_launch;
  if (serial != launch.serial || arrived == 0) {
    serial = launch.serial;
    arrived = 0;
    first_site = site;
  } else if (site != first_site) {
    Broken(launch, "divergent __syncthreads: thread " +
                       std::to_string(threadIdx.x) + " of block " +
                       std::to_string(blockIdx.x) +
                       " reaches a barrier from another call site than the "
                       "block's first thread there");
  }
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  if (++arrived == threads) arrived = 0;
  __syncthreads();
}

}  // namespace ct_emulation

#endif  // CAFFE_TEMPERATURE_TESTS_LAUNCH_RULES_HPP_
