#ifndef CAFFE_TEMPERATURE_SOFTMAX_KERNELS_HPP_
#define CAFFE_TEMPERATURE_SOFTMAX_KERNELS_HPP_

// CPU kernels shared by every layer of the plugin (their GPU counterparts:
// gpu_kernels.hpp). A blob is seen as outer x channels x inner; one softmax
// vector of `channels` values (stride `inner`) belongs to each (outer, inner)
// position.
//
// Each splits its rows or strips of positions between OpenMP threads
// (parallel.hpp); the results are the same bits for any thread count.
//
// They are built with -ffast-math (vectorised loops around
// vector_math.hpp): a vector that holds an infinity or a NaN gets IEEE exps
// (the NaN policy of docs/robustness.md), but nothing is checked. Callers
// validate beta before calling them. reference_kernels.hpp has plain,
// scalar versions of each, for tests and for A/B comparisons.

#include <vector>

namespace caffe_temperature {

struct SoftmaxShape {
  int outer;
  int channels;
  int inner;
  int positions() const { return outer * inner; }
  int count() const { return outer * channels * inner; }
};

// Inverse temperature of each position: position (o, i) reads
// data[o * outer_stride + i * inner_stride]. Zero strides share one value,
// which covers the three layouts docs/spec.md allows (shared, per sample,
// per position) without copying beta.
template <typename Dtype>
struct BetaView {
  const Dtype* data;
  int outer_stride;
  int inner_stride;
};

// y = softmax(beta * x) over channels. y may alias x.
template <typename Dtype>
void SoftmaxForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                       const BetaView<Dtype>& beta, Dtype* y);

// dx = beta * y * (dy - sum_k dy_k y_k). dx may alias dy or y.
template <typename Dtype>
void SoftmaxBackwardCPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx);

// Per position (o * inner + i): sum_c dy_c y_c (x_c - sum_k y_k x_k),
// the derivative of the loss with respect to that position's beta.
template <typename Dtype>
void SoftmaxBetaGradientCPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* y, const Dtype* dy,
                            Dtype* position_grad);

// The infogain loss of SoftmaxWithInfogainLoss (docs/spec.md), from the scores x
// (softmax with beta = 1): writes prob = softmax(x) and returns
//   -sum_{positions} sum_c H[l, c] log prob_c
// over the positions whose class l = classes[o * inner + i] is >= 0
// (negative: ignored). sum_rows_H[l] = sum_c H[l, c]. Classes and H
// must have been validated. A -inf logit x_c where H[l, c] != 0 makes the
// loss infinite (-H[l, c] log 0), which this fast-math code cannot compute:
// *plus_inf tells whether some H[l, c] > 0 meets one, *minus_inf whether
// some H[l, c] < 0 does, for the caller to add +inf and -inf (both: NaN) to
// the returned sum.
template <typename Dtype>
Dtype InfogainLossForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                             const int* classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype* prob,
                             bool* plus_inf, bool* minus_inf);

// dx_c = scale * (prob_c * sum_rows_H[l] - H[l, c]), 0 at ignored positions;
// classes, H and sum_rows_H as above.
template <typename Dtype>
void InfogainLossBackwardCPU(const SoftmaxShape& shape, const Dtype* prob,
                             const int* classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype scale, Dtype* dx);

// SoftmaxWithDistillationLoss's forward (docs/spec.md): q = softmax(beta *
// student), p = softmax(beta * teacher), and per position (o * inner + i)
// kl[pos] = sum_c p_c (log p_c - log q_c), with 0 log 0 = 0, where
// valid[pos] != 0, and 0 elsewhere (an ignored position's NaNs stay out).
// One read of both logits for the maxima, one for the exps (the KL's sum
// rides along), one scaling pass over p and q; the KL of a position whose
// logits hold an infinity or a NaN is then finished in IEEE arithmetic (a
// masked class must give 0 or +inf, and a NaN teacher probability must
// reach the loss instead of passing for 0 log 0). `scratch` is resized to
// what that finishing needs (a few values per position) and can be kept
// between calls, so that a forward allocates nothing.
template <typename Dtype>
void DistillationForwardCPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* valid, Dtype* q, Dtype* p, Dtype* kl,
                            std::vector<Dtype>* scratch);

// dx = scale * valid(position) * (q - p).
template <typename Dtype>
void DistillationBackwardCPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx);

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SOFTMAX_KERNELS_HPP_
