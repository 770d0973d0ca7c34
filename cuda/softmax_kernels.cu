// GPU versions of the kernels in src/softmax_kernels.cpp, plus the small
// helpers the layers need on the device (row sums, validation). Every softmax
// operation is one kernel: on a vector cached on chip (cached_row.cuh: each
// input read once, each output written once) where it fits, else on the
// multi-pass dispatch of per_vector.cuh.
#include <climits>
#include <cmath>

#include "cached_row.cuh"
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
  ForEach(g, v, [&](int64_t k, int) {
    StoreGlobal(dx + k, b * LoadGlobal(y + k) * (LoadGlobal(dy + k) - dot));
  });
}

// Each op has two call operators: one on a row cached on chip
// (cached_row.cuh), one on a vector read from global memory as often as it
// needs (per_vector.cuh); LaunchRowOp picks one.
template <typename D>
struct ForwardOp {
  typedef D Dtype;
  static const int kInputs = 1;
  static const int kStreamable = 0;
  const Dtype* x;
  BetaView<Dtype> beta;
  Dtype* y;
  bool Aligned(size_t bytes) const { return AllAligned(bytes, x, y); }
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype m = Max(g, v, x);
    const Dtype b = BetaAt(beta, v);
    const Dtype sum = Reduce(g, v, Dtype(0), SumOp(), [&](int64_t k, int) {
      return Exp(b * (LoadGlobal(x + k) - m));
    });
    ForEach(g, v, [&](int64_t k, int) {
      StoreGlobal(y + k, Exp(b * (LoadGlobal(x + k) - m)) / sum);
    });
  }
  // x read once, y written once, exp taken once per element.
  template <typename Row>
  __device__ void operator()(Row& row, const Vector& v) const {
    row.template Load<0>(x + v.offset);
    Dtype m = -INFINITY;
    row.ForEach([&](int, Dtype& z) { m = MaxOp()(m, z); });
    m = row.AllReduce(m, MaxOp());
    const Dtype b = BetaAt(beta, v);
    Dtype sum = 0;
    row.ForEach([&](int, Dtype& z) {
      z = Exp(b * (z - m));
      sum += z;
    });
    sum = row.AllReduce(sum, SumOp());
    const Dtype inv_sum = Dtype(1) / sum;
    row.Store(y + v.offset, [&](int, Dtype e) { return e * inv_sum; });
  }
};

template <typename D>
struct BackwardOp {
  typedef D Dtype;
  static const int kInputs = 2;
  // Rows that do not fit twice: y cached, dy read twice (3 R + 1 W).
  static const int kStreamable = 1;
  const Dtype* y;
  const Dtype* dy;
  BetaView<Dtype> beta;
  Dtype* dx;
  bool Aligned(size_t bytes) const { return AllAligned(bytes, y, dy, dx); }
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype dot = Reduce(g, v, Dtype(0), SumOp(),
                             [&](int64_t k, int) {
                               return LoadGlobal(dy + k) * LoadGlobal(y + k);
                             });
    InputGradient(g, v, BetaAt(beta, v), y, dy, dot, dx);
  }
  // y and dy read once (dy twice where streamed).
  template <typename Row>
  __device__ void operator()(Row& row, const Vector& v) const {
    row.template Load<0>(y + v.offset);
    row.template Load<1>(dy + v.offset);
    Dtype dot = 0;
    row.ForEach([&](int, Dtype& y_c, Dtype& dy_c) { dot += dy_c * y_c; });
    dot = row.AllReduce(dot, SumOp());
    const Dtype b = BetaAt(beta, v);
    row.Store(dx + v.offset, [&](int, Dtype y_c, Dtype dy_c) {
      return b * y_c * (dy_c - dot);
    });
  }
};

// The gradients to beta and to x in one pass over x, y and dy (after the
// max of x): the beta gradient
//   sum_c dy_c y_c (d_c - E_y[d]) = sum_c dy_c y_c d_c - dot E_y[d],
// with dot = sum_c dy_c y_c and d = x - m for any shift m, needs the same dot
// as dx; shifting by the max keeps the two terms from cancelling at the size
// of |x|.
template <typename D>
struct BackwardWithBetaGradientOp {
  typedef D Dtype;
  static const int kInputs = 3;
  // Rows that do not fit three times: x and y cached, dy read twice (once
  // without dx): 4 R + 1 W.
  static const int kStreamable = 1;
  const Dtype* x;
  const Dtype* y;
  const Dtype* dy;
  BetaView<Dtype> beta;
  Dtype* dx;  // may be NULL
  Dtype* position_grad;
  bool Aligned(size_t bytes) const {
    return AllAligned(bytes, x, y, dy, dx);
  }
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const Dtype m = Max(g, v, x);
    Dtype dot = 0, mean = 0, dot_d = 0;
    ForEach(g, v, [&](int64_t k, int) {
      const Dtype y_k = LoadGlobal(y + k);
      const Dtype d = LoadGlobal(x + k) - m, dy_y = LoadGlobal(dy + k) * y_k;
      dot += dy_y;
      mean += y_k * d;
      dot_d += dy_y * d;
    });
    dot = g.AllReduce(dot, SumOp());
    mean = g.AllReduce(mean, SumOp());
    dot_d = g.AllReduce(dot_d, SumOp());
    if (g.first == 0) position_grad[v.position] = dot_d - dot * mean;
    if (dx) InputGradient(g, v, BetaAt(beta, v), y, dy, dot, dx);
  }
  // x, y and dy read once (dy twice where streamed).
  template <typename Row>
  __device__ void operator()(Row& row, const Vector& v) const {
    row.template Load<0>(x + v.offset);
    row.template Load<1>(y + v.offset);
    row.template Load<2>(dy + v.offset);
    Dtype m = -INFINITY;
    row.template ForEachOf<0>([&](int, Dtype& x_c) { m = MaxOp()(m, x_c); });
    m = row.AllReduce(m, MaxOp());
    Dtype dot = 0, mean = 0, dot_d = 0;
    row.ForEach([&](int, Dtype& x_c, Dtype& y_c, Dtype& dy_c) {
      const Dtype d = x_c - m, dy_y = dy_c * y_c;
      dot += dy_y;
      mean += y_c * d;
      dot_d += dy_y * d;
    });
    dot = row.AllReduce(dot, SumOp());
    mean = row.AllReduce(mean, SumOp());
    dot_d = row.AllReduce(dot_d, SumOp());
    if (row.Leader()) position_grad[v.position] = dot_d - dot * mean;
    if (!dx) return;
    const Dtype b = BetaAt(beta, v);
    row.Store(dx + v.offset, [&](int, Dtype, Dtype y_c, Dtype dy_c) {
      return b * y_c * (dy_c - dot);
    });
  }
};

// Sums of fixed-size pieces of the rows of a rows x cols matrix: vector p of
// the dispatch is piece k = p % pieces of row p / pieces, columns
// [k * piece, min((k + 1) * piece, cols)), and its sum goes to sums[p]. With
// pieces == 1 and piece == cols, the plain row sums.
template <typename Dtype>
struct PieceSumOp {
  const Dtype* values;
  Dtype* sums;
  int cols;
  int piece;
  int pieces;
  template <typename Group>
  __device__ void operator()(const Group& g, const Vector& v) const {
    const int64_t row = v.position / pieces;
    const int64_t first = (v.position % pieces) * static_cast<int64_t>(piece);
    const int64_t left = cols - first;
    const Vector part = {static_cast<int>(row), 0, v.position,
                         row * cols + first, 1,
                         static_cast<int>(left < piece ? left : piece)};
    const Dtype sum = Reduce(g, part, Dtype(0), SumOp(),
                             [&](int64_t k, int) { return values[k]; });
    if (g.first == 0) sums[v.position] = sum;
  }
};

// *first = min(*first, i) for every i with is_bad(values[i]).
template <typename Dtype, typename Predicate>
__global__ void __launch_bounds__(kThreads, 1)
    FindFirstKernel(int n, const Dtype* values, Predicate is_bad, int* first) {
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
  const ForwardOp<Dtype> op = {x, beta, y};
  LaunchRowOp(shape, op);
}

template <typename Dtype>
void SoftmaxBackwardGPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx) {
  const BackwardOp<Dtype> op = {y, dy, beta, dx};
  LaunchRowOp(shape, op);
}

template <typename Dtype>
void SoftmaxBackwardWithBetaGradientGPU(const SoftmaxShape& shape,
                                        const Dtype* x, const Dtype* y,
                                        const Dtype* dy,
                                        const BetaView<Dtype>& beta, Dtype* dx,
                                        Dtype* position_grad) {
  const BackwardWithBetaGradientOp<Dtype> op = {x, y, dy, beta, dx,
                                                position_grad};
  LaunchRowOp(shape, op);
}

// Rows longer than one chunk are summed by many blocks: stage 1 sums each
// kRowSumChunk-column chunk of every row with a block of its own (rows x
// chunks blocks) into partials, stage 2 sums each row's partials. Both add
// in an order fixed by the chunk size alone, so the bits do not depend on
// the device. Chunks of kRowSumChunk > kMaxWarpRowChannels columns get a
// block each from LaunchPerVector.
template <typename Dtype>
void RowSumsGPU(int rows, int cols, const Dtype* values, Dtype* partials,
                Dtype* sums) {
  const int64_t chunks = RowSumChunks(cols);
  if (chunks <= 1) {
    const SoftmaxShape shape = {rows, cols, 1};
    const PieceSumOp<Dtype> op = {values, sums, cols, cols, 1};
    LaunchPerVector<Dtype>(shape, op);
    return;
  }
  CHECK_LE(rows * chunks, INT_MAX) << "RowSumsGPU: too many chunks";
  const SoftmaxShape stage1 = {static_cast<int>(rows * chunks), kRowSumChunk,
                               1};
  const PieceSumOp<Dtype> chunk_sums = {values, partials, cols, kRowSumChunk,
                                        static_cast<int>(chunks)};
  LaunchPerVector<Dtype>(stage1, chunk_sums);
  const SoftmaxShape stage2 = {rows, static_cast<int>(chunks), 1};
  const PieceSumOp<Dtype> row_sums = {partials, sums, stage2.channels,
                                      stage2.channels, 1};
  LaunchPerVector<Dtype>(stage2, row_sums);
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
  template void SoftmaxBackwardGPU<Dtype>(const SoftmaxShape&, const Dtype*,  \
                                          const Dtype*,                       \
                                          const BetaView<Dtype>&, Dtype*);    \
  template void SoftmaxBackwardWithBetaGradientGPU<Dtype>(                    \
      const SoftmaxShape&, const Dtype*, const Dtype*, const Dtype*,          \
      const BetaView<Dtype>&, Dtype*, Dtype*);                                \
  template void RowSumsGPU<Dtype>(int, int, const Dtype*, Dtype*, Dtype*);    \
  template void FindInvalidBetaGPU<Dtype>(int, const Dtype*, int*);           \
  template void FindNonFiniteGPU<Dtype>(int, const Dtype*, int*);

CT_INSTANTIATE_SOFTMAX_GPU(float)
CT_INSTANTIATE_SOFTMAX_GPU(double)

}  // namespace caffe_temperature
