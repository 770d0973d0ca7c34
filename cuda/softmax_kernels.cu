// GPU versions of the kernels in src/softmax_kernels.cpp. Every operation is
// one kernel that reads a softmax vector a few times and writes it once; the
// vector is owned by one warp (inner == 1, small C), one block (inner == 1,
// large C) or one thread (inner > 1, where adjacent threads take adjacent
// inner positions, so that each channel's loads are coalesced).
#include <cmath>

#include "caffe/common.hpp"
#include "caffe/util/device_alternate.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "reduce.cuh"

namespace caffe_temperature {

namespace {

// Above this many channels a row gets a whole block instead of a warp.
const int kMaxWarpRowChannels = 1024;

// The full-precision exp/log: __expf loses about one ulp per unit of its
// argument, and b (x - m) reaches -87 before the result underflows.
__device__ __forceinline__ float Exp(float z) { return expf(z); }
__device__ __forceinline__ double Exp(double z) { return exp(z); }
__device__ __forceinline__ float Log(float z) { return logf(z); }
__device__ __forceinline__ double Log(double z) { return log(z); }

// The threads sharing one softmax vector: this thread visits channels
// first, first + step, ... and AllReduce combines the partial results of all
// of them.
struct ThreadGroup {
  static const int first = 0;
  static const int step = 1;
  template <typename T, typename Op>
  __device__ T AllReduce(T value, Op) const { return value; }
};

struct WarpGroup {
  int first;
  static const int step = kWarpSize;
  template <typename T, typename Op>
  __device__ T AllReduce(T value, Op op) const {
    return WarpAllReduce(value, op);
  }
};

template <typename Dtype>
struct BlockGroup {
  int first;
  int step;
  Dtype* scratch;
  template <typename Op>
  __device__ Dtype AllReduce(Dtype value, Op op) const {
    return BlockAllReduce(value, op, scratch);
  }
};

// One softmax vector: channel c of position (o, i) is at offset + c * stride.
struct Vector {
  int o;
  int i;
  int position;  // o * inner + i
  int offset;
  int stride;
  int channels;
};

template <typename Dtype>
__device__ __forceinline__ Dtype BetaAt(const BetaView<Dtype>& beta,
                                        const Vector& v) {
  return beta.data[v.o * beta.outer_stride + v.i * beta.inner_stride];
}

// Combines f(k) over the vector's element offsets k with op.
template <typename Dtype, typename Group, typename Op, typename F>
__device__ __forceinline__ Dtype Reduce(const Group& g, const Vector& v,
                                        Dtype init, Op op, F f) {
  Dtype acc = init;
  for (int c = g.first; c < v.channels; c += g.step) {
    acc = op(acc, f(v.offset + c * v.stride));
  }
  return g.AllReduce(acc, op);
}

// Calls f(k) for the element offsets k that this thread visits in Reduce:
// each element is read and written by one thread, so outputs may alias
// inputs.
template <typename Group, typename F>
__device__ __forceinline__ void ForEach(const Group& g, const Vector& v,
                                        F f) {
  for (int c = g.first; c < v.channels; c += g.step) {
    f(v.offset + c * v.stride);
  }
}

// -inf rather than a first element keeps threads that own no channel
// harmless.
template <typename Dtype, typename Group>
__device__ __forceinline__ Dtype Max(const Group& g, const Vector& v,
                                     const Dtype* x) {
  return Reduce(g, v, Dtype(-INFINITY), MaxOp(), [&](int k) { return x[k]; });
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
    const Dtype sum = Reduce(g, v, Dtype(0), SumOp(),
                             [&](int k) { return Exp(b * (x[k] - m)); });
    const Dtype log_sum = Log(sum);
    ForEach(g, v, [&](int k) {
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
                             [&](int k) { return dy[k] * y[k]; });
    const Dtype b = BetaAt(beta, v);
    ForEach(g, v, [&](int k) { dx[k] = b * y[k] * (dy[k] - dot); });
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
    const Dtype mean = Reduce(g, v, Dtype(0), SumOp(),
                              [&](int k) { return y[k] * (x[k] - m); });
    const Dtype grad = Reduce(g, v, Dtype(0), SumOp(), [&](int k) {
      return dy[k] * y[k] * (x[k] - m - mean);
    });
    if (g.first == 0) position_grad[v.position] = grad;
  }
};

// inner > 1: one thread per position.
template <typename Op>
__global__ void PositionPerThreadKernel(const int positions,
                                        const SoftmaxShape s, const Op op) {
  CUDA_KERNEL_LOOP(p, positions) {
    const int o = p / s.inner, i = p % s.inner;
    const Vector v = {o, i, p, o * s.channels * s.inner + i, s.inner,
                      s.channels};
    op(ThreadGroup(), v);
  }
}

// inner == 1, C <= kMaxWarpRowChannels: one warp per row. The loop bound is
// the same for all lanes of a warp, so every shuffle sees the full warp.
template <typename Op>
__global__ void RowPerWarpKernel(const SoftmaxShape s, const Op op) {
  const WarpGroup g = {static_cast<int>(threadIdx.x % kWarpSize)};
  const int warps_per_block = blockDim.x / kWarpSize;
  for (int o = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize;
       o < s.outer; o += gridDim.x * warps_per_block) {
    const Vector v = {o, 0, o, o * s.channels, 1, s.channels};
    op(g, v);
  }
}

// inner == 1, C > kMaxWarpRowChannels: one block per row.
template <typename Dtype, typename Op>
__global__ void RowPerBlockKernel(const SoftmaxShape s, const Op op) {
  __shared__ Dtype scratch[kWarpSize];
  const BlockGroup<Dtype> g = {static_cast<int>(threadIdx.x),
                               static_cast<int>(blockDim.x), scratch};
  for (int o = blockIdx.x; o < s.outer; o += gridDim.x) {
    const Vector v = {o, 0, o, o * s.channels, 1, s.channels};
    op(g, v);
  }
}

template <typename Dtype, typename Op>
void LaunchPerVector(const SoftmaxShape& s, const Op& op) {
  if (s.positions() == 0) return;  // a grid of zero blocks is an error
  if (s.inner > 1) {
    PositionPerThreadKernel<<<caffe::CAFFE_GET_BLOCKS(s.positions()),
                              caffe::CAFFE_CUDA_NUM_THREADS>>>(
        s.positions(), s, op);
  } else if (s.channels <= kMaxWarpRowChannels) {
    const int rows_per_block = caffe::CAFFE_CUDA_NUM_THREADS / kWarpSize;
    RowPerWarpKernel<<<(s.outer + rows_per_block - 1) / rows_per_block,
                       caffe::CAFFE_CUDA_NUM_THREADS>>>(s, op);
  } else {
    RowPerBlockKernel<Dtype><<<s.outer, caffe::CAFFE_CUDA_NUM_THREADS>>>(s, op);
  }
  CUDA_POST_KERNEL_CHECK;
}

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

#define CT_INSTANTIATE_GPU_KERNELS(Dtype)                                     \
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
                                              const Dtype*, Dtype*);

CT_INSTANTIATE_GPU_KERNELS(float)
CT_INSTANTIATE_GPU_KERNELS(double)

}  // namespace caffe_temperature
