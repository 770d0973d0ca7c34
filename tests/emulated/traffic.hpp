#ifndef CAFFE_TEMPERATURE_TESTS_TRAFFIC_HPP_
#define CAFFE_TEMPERATURE_TESTS_TRAFFIC_HPP_

// The global memory traffic of the kernels' row elements, as cuda/'s
// LoadGlobal and StoreGlobal (cuda/launch.cuh) report it through
// CT_COUNT_GLOBAL: bytes read and written since the last Take, over all
// launches. Included by cuda_on_hip_cpu.hpp, ahead of every file of cuda/.

#include <atomic>
#include <cstdint>

namespace ct_emulation {

struct Traffic {
  int64_t read_bytes;
  int64_t written_bytes;
};

class TrafficCounter {
 public:
  static TrafficCounter& Get() {
    static TrafficCounter counter;
    return counter;
  }
  void Add(int64_t read_bytes, int64_t written_bytes) {
    if (read_bytes) read_.fetch_add(read_bytes, std::memory_order_relaxed);
    if (written_bytes) {
      written_.fetch_add(written_bytes, std::memory_order_relaxed);
    }
  }
  // The traffic since the last call (the launches finished).
  Traffic Take() {
    return {read_.exchange(0), written_.exchange(0)};
  }

 private:
  std::atomic<int64_t> read_{0};
  std::atomic<int64_t> written_{0};
};

}  // namespace ct_emulation

#define CT_COUNT_GLOBAL(read_bytes, written_bytes)          \
  ::ct_emulation::TrafficCounter::Get().Add((read_bytes),   \
                                            (written_bytes))

#endif  // CAFFE_TEMPERATURE_TESTS_TRAFFIC_HPP_
