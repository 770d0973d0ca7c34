// The benchmark's floors, built like src/softmax_kernels.cpp (see
// python/CMakeLists.txt): the exp floor (Limit*: a softmax's passes over
// blocks, with the kernels' exp) and the memory floor (MemoryPass: the bytes
// alone).
#ifndef CAFFE_TEMPERATURE_NATIVE_LIMIT_HPP_
#define CAFFE_TEMPERATURE_NATIVE_LIMIT_HPP_

#include <cstddef>

namespace caffe_temperature_native {

// Both share the blocks between OpenMP threads (omp_get_max_threads()), as the
// kernels share their rows, and leave small arrays on one thread.
//
// For each block of `block` consecutive values (the last one may be shorter):
// a read pass (max), an exp pass that writes y and sums it, and a read + write
// pass that scales y. That is, a softmax of each block.
void LimitForward(const float* x, float* y, std::size_t n, std::size_t block);
void LimitForward(const double* x, double* y, std::size_t n, std::size_t block);

// For each block: a read pass of y and dy (their dot product), and a pass
// that reads both again and writes dx = y * (dy - dot): a softmax backward.
void LimitBackward(const float* y, const float* dy, float* dx, std::size_t n,
                   std::size_t block);
void LimitBackward(const double* y, const double* dy, double* dx,
                   std::size_t n, std::size_t block);

// The memory floor: reads in[0, n_in) once and writes out[0, n_out), n_out <=
// n_in, as a copy of in's first n_out values (with streaming stores where the
// layers stream an output that large, streaming.hpp); returns the sum of the
// values it read but did not copy, so that no read is left out.
float MemoryPass(const float* in, std::size_t n_in, float* out,
                 std::size_t n_out);

}  // namespace caffe_temperature_native

#endif  // CAFFE_TEMPERATURE_NATIVE_LIMIT_HPP_
