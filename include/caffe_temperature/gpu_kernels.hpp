#ifndef CAFFE_TEMPERATURE_GPU_KERNELS_HPP_
#define CAFFE_TEMPERATURE_GPU_KERNELS_HPP_

// The device side of every layer (cuda/*_kernels.cu), as plain entry points
// on device pointers and shapes: the layers' .cu files only pass their blobs
// in, and tests/emulated runs these same functions on the CPU through
// HIP-CPU without Caffe.
//
// Each entry point launches on the default stream of the current device, as
// every Caffe 1.0 layer does, and keeps no state between calls, so each
// data-parallel replica (one solver thread per GPU) runs its own copy safely.
// Zero positions launch nothing. Index arithmetic is 64-bit inside: products
// such as positions * 32 pass 2^31 long before a blob reaches Caffe's
// INT_MAX count. "Not found" indices are INT_MAX.

#include <cstdint>

#include "caffe_temperature/labels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe_temperature {

// The softmax family: the math of the CPU functions of the same name
// (softmax_kernels.hpp); BetaView.data is a device pointer.
template <typename Dtype>
void SoftmaxForwardGPU(const SoftmaxShape& shape, const Dtype* x,
                       const BetaView<Dtype>& beta, Dtype* y);
template <typename Dtype>
void SoftmaxBackwardGPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx);
// SoftmaxBetaGradientCPU's position_grad and, when dx is not NULL,
// SoftmaxBackwardCPU's dx, in one pass (dx may alias dy).
template <typename Dtype>
void SoftmaxBackwardWithBetaGradientGPU(const SoftmaxShape& shape,
                                        const Dtype* x, const Dtype* y,
                                        const Dtype* dy,
                                        const BetaView<Dtype>& beta, Dtype* dx,
                                        Dtype* position_grad);

// The columns one block of RowSumsGPU sums: a constant, so that the order
// of the additions, and the bits of the sums, are the same on every GPU.
const int kRowSumChunk = 2048;

// How many chunks of kRowSumChunk columns a row of `cols` has (0 for none).
inline int64_t RowSumChunks(int cols) {
  return (static_cast<int64_t>(cols) + kRowSumChunk - 1) / kRowSumChunk;
}

// The size of the `partials` scratch RowSumsGPU needs: one value per chunk
// of each row where a row has more than one chunk, else 0 (partials may then
// be NULL).
inline int64_t RowSumsScratchCount(int rows, int cols) {
  const int64_t chunks = RowSumChunks(cols);
  return chunks > 1 ? rows * chunks : 0;
}

// sums[r] = sum_c values[r * cols + c], each row added in a fixed order, so
// the result does not change from run to run or from GPU to GPU. Rows longer
// than kRowSumChunk are summed a chunk per block into `partials`
// (RowSumsScratchCount(rows, cols) values), then a block per row.
template <typename Dtype>
void RowSumsGPU(int rows, int cols, const Dtype* values, Dtype* partials,
                Dtype* sums);

// *first = the lowest i with beta[i] not finite and > 0, else INT_MAX
// (first is a device pointer).
template <typename Dtype>
void FindInvalidBetaGPU(int n, const Dtype* beta, int* first);

// *first = the lowest i with values[i] not finite, else INT_MAX.
template <typename Dtype>
void FindNonFiniteGPU(int n, const Dtype* values, int* first);

// SoftmaxWithInfogainLoss forward: prob = softmax(x) and, per position p,
//   stats[p] = -sum_c H[l, c] log prob_c (0 where not counted),
//   stats[positions + p] = 1 where the label l is valid, else 0,
// *first_bad_label = the lowest position whose label is neither valid nor
// ignored (INT_MAX when none). sum_rows_H[l] = sum_c H[l, c].
template <typename Dtype>
void InfogainLossForwardGPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* label, const IgnoreLabel& ignore,
                            const Dtype* H, const Dtype* sum_rows_H,
                            Dtype* prob, Dtype* stats, int* first_bad_label);

// dx_c = top_diff[0] * inv_norm * (prob_c sum_rows_H[l] - H[l, c]), 0 where
// the label is not valid. top_diff stays on the device.
template <typename Dtype>
void InfogainLossBackwardGPU(const SoftmaxShape& shape, const Dtype* prob,
                             const Dtype* label, const IgnoreLabel& ignore,
                             const Dtype* H, const Dtype* sum_rows_H,
                             const Dtype* top_diff, Dtype inv_norm, Dtype* dx);

// SoftmaxWithDistillationLoss forward: q = softmax(beta * student),
// p = softmax(beta * teacher) and, per position, the rows of stats
// (3 x positions): KL(p || q) where the position counts (else 0), 1 where it
// counts, 1 where its label is invalid. label may be NULL (every position
// counts).
template <typename Dtype>
void DistillationForwardGPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* label, const IgnoreLabel& ignore,
                            Dtype* q, Dtype* p, Dtype* stats);

// dx = scale * valid(position) * (q - p).
template <typename Dtype>
void DistillationBackwardGPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx);

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_GPU_KERNELS_HPP_
