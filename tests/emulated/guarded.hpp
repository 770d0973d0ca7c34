#ifndef CAFFE_TEMPERATURE_TESTS_GUARDED_HPP_
#define CAFFE_TEMPERATURE_TESTS_GUARDED_HPP_

// The emulated tests' device buffers: values between two guard zones of a
// poison NaN, so that a write out of bounds changes a guard (reported), a
// read out of bounds brings the NaN into a result and an element a kernel
// never writes is still poison afterwards.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace caffe_temperature {

const int kGuard = 64;

// Poison: a quiet NaN with a payload no arithmetic produces, and for ints a
// value no index takes.
template <typename T>
T Poison() {
  if (std::is_same<T, float>::value) {
    const uint32_t bits = 0x7fc0beefu;
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return static_cast<T>(value);
  }
  if (std::is_same<T, double>::value) {
    const uint64_t bits = 0x7ff800000000beefull;
    double value;
    std::memcpy(&value, &bits, sizeof(value));
    return static_cast<T>(value);
  }
  return static_cast<T>(0x5a5a5a5a);
}

template <typename T>
bool SameBits(T a, T b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

// n values between two poisoned guard zones; HIP-CPU's device memory is host
// memory, so the kernels take these pointers as they are. The values start
// 16-byte aligned, as cudaMalloc's do, unless `shift` (in elements) moves
// them off, as a pointer into the middle of a blob may be.
template <typename T>
class Guarded {
 public:
  explicit Guarded(int64_t n, int shift = 0)
      : n_(n), front_(kGuard + shift),
        storage_(n + 2 * kGuard + shift, Poison<T>()) {}
  explicit Guarded(const std::vector<T>& values, int shift = 0)
      : Guarded(values.size(), shift) {
    std::copy(values.begin(), values.end(), data());
  }
  T* data() { return storage_.data() + front_; }
  const T* data() const { return storage_.data() + front_; }
  int64_t size() const { return n_; }
  T operator[](int64_t i) const { return data()[i]; }
  std::vector<T> values() const {
    return std::vector<T>(data(), data() + n_);
  }

  ::testing::AssertionResult GuardsIntact() const {
    for (int g = 0; g < front_; ++g) {
      if (!SameBits(storage_[g], Poison<T>())) {
        return ::testing::AssertionFailure()
               << "write before the buffer, at index " << g - front_;
      }
    }
    for (int g = 0; g < kGuard; ++g) {
      if (!SameBits(storage_[front_ + n_ + g], Poison<T>())) {
        return ::testing::AssertionFailure()
               << "write past the end of the buffer, at index " << n_ + g;
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  int64_t n_;
  int front_;
  std::vector<T> storage_;
};

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_TESTS_GUARDED_HPP_
