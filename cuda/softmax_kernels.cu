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

// dx_c = b y_c (dy_c - dot), dot = sum_k dy_k y_k; dx may alias dy.
template <typename Dtype, typename Group>
__device__ __forceinline__ void InputGradient(const Group& g, const Vector& v,
                                              Dtype b, const Dtype* y,
                                              const Dtype* dy, Dtype dot,
                                              Dtype* dx) {
  ForEach(g, v, [&](int64_t k, int) { dx[k] = b * y[k] * (dy[k] - dot); });
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
    InputGradient(g, v, BetaAt(beta, v), y, dy, dot, dx);
  }
};

// The gradients to beta and to x in one pass over x, y and dy (after the
// max of x): the beta gradient
//   sum_c dy_c y_c (d_c - E_y[d]) = sum_c dy_c y_c d_c - dot E_y[d],
// with dot = sum_c dy_c y_c and d = x - m for any shift m, needs the same dot
// as dx; shifting by the max keeps the two terms from cancelling at the size
// of |x|.
template <typename Dtype>
struct BackwardWithBetaGradientOp {
  const Dtype* x;
  const Dtype* y;
  const Dtype* dy;
  BetaView<Dtype> beta;
  Dtype* dx;  // may be NULL
  Dtype* position_grad;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype m = Max(g, v, x);
    Dtype dot = 0, mean = 0, dot_d = 0;
    ForEach(g, v, [&](int64_t k, int) {
      const Dtype d = x[k] - m, dy_y = dy[k] * y[k];
      dot += dy_y;
      mean += y[k] * d;
      dot_d += dy_y * d;
    });
    dot = g.AllReduce(dot, SumOp());
    mean = g.AllReduce(mean, SumOp());
    dot_d = g.AllReduce(dot_d, SumOp());
    if (g.first == 0) position_grad[v.position] = dot_d - dot * mean;
    if (dx) InputGradient(g, v, BetaAt(beta, v), y, dy, dot, dx);
  }
};

// inner == 1, C <= kCols * 32: one warp per row with the row held in
// registers, kCols values per lane (channels lane, lane + 32, ...), so that
// x is read once, y written once and exp taken once per element (the
// per-vector ForwardOp reads x three times and takes exp twice). Lanes past
// the row hold -inf, which adds exp(-inf) = 0 to the sum.
template <typename Dtype, int kCols>
__global__ void CachedRowForwardKernel(const SoftmaxShape s, const Dtype* x,
                                       const BetaView<Dtype> beta, Dtype* y,
                                       Dtype* log_y) {
  const int64_t row = GlobalThread() / kWarpSize;
  if (row >= s.outer) return;  // whole warps leave together
  const int lane = threadIdx.x % kWarpSize;
  const int64_t offset = row * s.channels;
  Dtype z[kCols];
  Dtype m = -INFINITY;
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int c = lane + j * kWarpSize;
    z[j] = c < s.channels ? x[offset + c] : Dtype(-INFINITY);
    m = MaxOp()(m, z[j]);
  }
  m = WarpAllReduce(m, MaxOp());
  const Dtype b = beta.data[row * beta.outer_stride];
  Dtype sum = 0;
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    z[j] = b * (z[j] - m);
    // Without log y, z becomes exp(z) right away: the only exp.
    if (!log_y) z[j] = Exp(z[j]);
    sum += log_y ? Exp(z[j]) : z[j];
  }
  sum = WarpAllReduce(sum, SumOp());
  const Dtype log_sum = Log(sum), inv_sum = Dtype(1) / sum;
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int c = lane + j * kWarpSize;
    if (c >= s.channels) continue;
    if (!log_y) {
      y[offset + c] = z[j] * inv_sum;
      continue;
    }
    log_y[offset + c] = z[j] - log_sum;
    if (y) y[offset + c] = Exp(z[j] - log_sum);
  }
}

// Launches the cached kernel with the fewest registers per lane that hold
// the row: kCols = 1, 2, 4, ..., 32 (C up to 1024).
template <typename Dtype, int kCols = 1>
void LaunchCachedRowForward(const SoftmaxShape& s, const Dtype* x,
                            const BetaView<Dtype>& beta, Dtype* y,
                            Dtype* log_y) {
  if constexpr (kCols < kMaxWarpRowChannels / kWarpSize) {
    if (s.channels > kCols * kWarpSize) {
      LaunchCachedRowForward<Dtype, 2 * kCols>(s, x, beta, y, log_y);
      return;
    }
  }
  Launch(CachedRowForwardKernel<Dtype, kCols>,
         BlocksFor(static_cast<int64_t>(s.outer) * kWarpSize), kThreads, s, x,
         beta, y, log_y);
}

// The forward entry points: rows that fit in a warp's registers take the
// cached kernel, the rest (inner > 1, or C > 1024) the per-vector dispatch.
template <typename Dtype>
void LaunchForward(const SoftmaxShape& s, const Dtype* x,
                   const BetaView<Dtype>& beta, Dtype* y, Dtype* log_y) {
  if (s.inner == 1 && s.channels <= kMaxWarpRowChannels) {
    LaunchCachedRowForward(s, x, beta, y, log_y);
    return;
  }
  const ForwardOp<Dtype> op = {x, beta, y, log_y};
  LaunchPerVector<Dtype>(s, op);
}

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
  LaunchForward(shape, x, beta, y, static_cast<Dtype*>(NULL));
}

template <typename Dtype>
void LogSoftmaxForwardGPU(const SoftmaxShape& shape, const Dtype* x,
                          const BetaView<Dtype>& beta, Dtype* log_y, Dtype* y) {
  LaunchForward(shape, x, beta, y, log_y);
}

template <typename Dtype>
void SoftmaxBackwardGPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx) {
  const BackwardOp<Dtype> op = {y, dy, beta, dx};
  LaunchPerVector<Dtype>(shape, op);
}

template <typename Dtype>
void SoftmaxBackwardWithBetaGradientGPU(const SoftmaxShape& shape,
                                        const Dtype* x, const Dtype* y,
                                        const Dtype* dy,
                                        const BetaView<Dtype>& beta, Dtype* dx,
                                        Dtype* position_grad) {
  const BackwardWithBetaGradientOp<Dtype> op = {x, y, dy, beta, dx,
                                                position_grad};
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
  template void SoftmaxBackwardWithBetaGradientGPU<Dtype>(                    \
      const SoftmaxShape&, const Dtype*, const Dtype*, const Dtype*,          \
      const BetaView<Dtype>&, Dtype*, Dtype*);                                \
  template void RowSumsGPU<Dtype>(int, int, const Dtype*, Dtype*);            \
  template void FindInvalidBetaGPU<Dtype>(int, const Dtype*, int*);           \
  template void FindNonFiniteGPU<Dtype>(int, const Dtype*, int*);

CT_INSTANTIATE_SOFTMAX_GPU(float)
CT_INSTANTIATE_SOFTMAX_GPU(double)

}  // namespace caffe_temperature
