#ifndef CAFFE_TEMPERATURE_CUDA_REDUCE_CUH_
#define CAFFE_TEMPERATURE_CUDA_REDUCE_CUH_

// Warp and block reductions shared by the plugin's kernels. A softmax vector
// is reduced by one warp (small C) or one block (large C); these give every
// thread of that warp or block the result.

namespace caffe_temperature {

const int kWarpSize = 32;

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

template <typename T, typename Op>
__device__ __forceinline__ T WarpAllReduce(T value, Op op) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

// blockDim.x must be a multiple of 32 and at most 1024; `scratch` holds at
// least 32 values. All threads of the block must call it.
template <typename T, typename Op>
__device__ __forceinline__ T BlockAllReduce(T value, Op op, T* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  value = WarpAllReduce(value, op);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  // A serial pass over the per-warp results: a second warp reduction would
  // need an identity element for the lanes beyond `warps`.
  value = scratch[0];
  for (int w = 1; w < warps; ++w) value = op(value, scratch[w]);
  return value;
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_CUDA_REDUCE_CUH_
