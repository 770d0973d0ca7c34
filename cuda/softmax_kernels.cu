// GPU versions of the kernels in src/softmax_kernels.cpp, on the dispatch of
// per_vector.cuh, plus the small helpers the layers need on the device (row
// sums, validation). Every softmax operation is one kernel that reads a
// vector a few times and writes it once.
#include <climits>
#include <cmath>

#include "caffe_temperature/gpu_kernels.hpp"
#include "device_math.cuh"
#include "per_vector.cuh"

namespace caffe_temperature {

namespace {

template <typename Dtype>
__device__ __forceinline__ Dtype BetaAt(const BetaView<Dtype>& beta,
                                        const Vector& v) {
  return beta.data[static_cast<int64_t>(v.o) * beta.outer_stride +
                   static_cast<int64_t>(v.i) * beta.inner_stride];
}

template <typename Dtype>
struct ForwardOp {
  const Dtype* x;
  BetaView<Dtype> beta;
  Dtype* y;      // may be NULL
  Dtype* log_y;  // may be NULL
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype m = Max(g, v, x);
    const Dtype b = BetaAt(beta, v);
    const Dtype sum = Reduce(g, v, Dtype(0), SumOp(), [&](int64_t k, int) {
      return Exp(b * (x[k] - m));
    });
    const Dtype log_sum = Log(sum);
    ForEach(g, v, [&](int64_t k, int) {
      const Dtype z = b * (x[k] - m);
      if (log_y) log_y[k] = z - log_sum;
      if (y) y[k] = Exp(z) / sum;
    });
  }
};

template <typename Dtype>
struct BackwardOp {
  const Dtype* y;
  const Dtype* dy;
  BetaView<Dtype> beta;
  Dtype* dx;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype dot = Reduce(g, v, Dtype(0), SumOp(),
                             [&](int64_t k, int) { return dy[k] * y[k]; });
    const Dtype b = BetaAt(beta, v);
    ForEach(g, v, [&](int64_t k, int) { dx[k] = b * y[k] * (dy[k] - dot); });
  }
};

template <typename Dtype>
struct BetaGradientOp {
  const Dtype* x;
  const Dtype* y;
  const Dtype* dy;
  Dtype* position_grad;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    // sum_c dy_c y_c (d_c - E_y[d]) with d = x - m for any shift m; the max
    // keeps d and E_y[d] small where |x| is large, so they cancel less.
    const Dtype m = Max(g, v, x);
    const Dtype mean = Reduce(g, v, Dtype(0), SumOp(), [&](int64_t k, int) {
      return y[k] * (x[k] - m);
    });
    const Dtype grad = Reduce(g, v, Dtype(0), SumOp(), [&](int64_t k, int) {
      return dy[k] * y[k] * (x[k] - m - mean);
    });
    if (g.first == 0) position_grad[v.position] = grad;
  }
};

// A row of a rows x cols matrix is a vector of cols channels with inner = 1.
template <typename Dtype>
struct RowSumOp {
  const Dtype* values;
  Dtype* sums;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype sum = Reduce(g, v, Dtype(0), SumOp(),
                             [&](int64_t k, int) { return values[k]; });
    if (g.first == 0) sums[v.position] = sum;
  }
};

// *first = min(*first, i) for every i with is_bad(values[i]).
template <typename Dtype, typename Predicate>
__global__ void FindFirstKernel(int n, const Dtype* values,
                                Predicate is_bad, int* first) {
  const int64_t i = GlobalThread();
  if (i < n && is_bad(values[i])) atomicMin(first, static_cast<int>(i));
}

template <typename Dtype, typename Predicate>
void FindFirst(int n, const Dtype* values, Predicate is_bad, int* first) {
  Launch(SetKernel<int>, 1, 1, first, INT_MAX);
  Launch(FindFirstKernel<Dtype, Predicate>, BlocksFor(n), kThreads, n,
         values, is_bad, first);
}

struct IsInvalidBeta {
  template <typename Dtype>
  __device__ bool operator()(Dtype beta) const {
    return !(beta > 0 && isfinite(beta));
  }
};

struct IsNonFinite {
  template <typename Dtype>
  __device__ bool operator()(Dtype value) const { return !isfinite(value); }
};

}  // namespace

template <typename Dtype>
void SoftmaxForwardGPU(const SoftmaxShape& shape, const Dtype* x,
                       const BetaView<Dtype>& beta, Dtype* y) {
  const ForwardOp<Dtype> op = {x, beta, y, NULL};
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void LogSoftmaxForwardGPU(const SoftmaxShape& shape, const Dtype* x,
                          const BetaView<Dtype>& beta, Dtype* log_y, Dtype* y) {
  const ForwardOp<Dtype> op = {x, beta, y, log_y};
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void SoftmaxBackwardGPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx) {
  const BackwardOp<Dtype> op = {y, dy, beta, dx};
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void SoftmaxBetaGradientGPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* y, const Dtype* dy,
                            Dtype* position_grad) {
  const BetaGradientOp<Dtype> op = {x, y, dy, position_grad};
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void RowSumsGPU(int rows, int cols, const Dtype* values, Dtype* sums) {
  const SoftmaxShape shape = {rows, cols, 1};
  const RowSumOp<Dtype> op = {values, sums};
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void FindInvalidBetaGPU(int n, const Dtype* beta, int* first) {
  FindFirst(n, beta, IsInvalidBeta(), first);
}

template <typename Dtype>
void FindNonFiniteGPU(int n, const Dtype* values, int* first) {
  FindFirst(n, values, IsNonFinite(), first);
}

#define CT_INSTANTIATE_SOFTMAX_GPU(Dtype)                                     \
  template void SoftmaxForwardGPU<Dtype>(const SoftmaxShape&, const Dtype*,   \
                                         const BetaView<Dtype>&, Dtype*);     \
  template void LogSoftmaxForwardGPU<Dtype>(const SoftmaxShape&, const Dtype*,\
                                            const BetaView<Dtype>&, Dtype*,   \
                                            Dtype*);                          \
  template void SoftmaxBackwardGPU<Dtype>(const SoftmaxShape&, const Dtype*,  \
                                          const Dtype*,                       \
                                          const BetaView<Dtype>&, Dtype*);    \
  template void SoftmaxBetaGradientGPU<Dtype>(const SoftmaxShape&,            \
                                              const Dtype*, const Dtype*,     \
                                              const Dtype*, Dtype*);          \
  template void RowSumsGPU<Dtype>(int, int, const Dtype*, Dtype*);            \
  template void FindInvalidBetaGPU<Dtype>(int, const Dtype*, int*);           \
  template void FindNonFiniteGPU<Dtype>(int, const Dtype*, int*);

CT_INSTANTIATE_SOFTMAX_GPU(float)
CT_INSTANTIATE_SOFTMAX_GPU(double)

}  // namespace caffe_temperature
