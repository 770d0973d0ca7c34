#ifndef CAFFE_TEMPERATURE_SRC_SOFTMAX_SUMS_HPP_
#define CAFFE_TEMPERATURE_SRC_SOFTMAX_SUMS_HPP_

// The softmax passes shared by the fast-math kernels (internal to src/): the
// maximum and the sum of exps of a row or of each position of a strip.
// Only for translation units built with -ffast-math -fopenmp-simd.
#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe_temperature/cpu_clones.hpp"
#include "caffe_temperature/vector_math.hpp"
#include "kernel_layout.hpp"

namespace caffe_temperature {

// The exps of the softmax loops: ExpNonPositive where a vector is finite,
// std::exp (IEEE infinities and NaNs) where it is not (vector_math.hpp).
// A row (RowSoftmaxSum) holds an infinity or a NaN exactly when the largest
// of its values' magnitude bits says so: an integer max per value beside the
// max of the values, where a float sum of the values was a chain of adds of
// 3 cycles' latency each (an integer max takes 1). A strip position is
// tested by the sum of its values' sizes (not finite where a value is not,
// or where the sum overflowed, which only costs the slower exp): the
// infogain loss needs that sum, and it rides along with the max at one add
// per value, where testing each value's bits would slow that pass down by
// half.
struct FastExp {
  template <typename Dtype>
  CT_INLINE Dtype operator()(Dtype v) const { return ExpNonPositive(v); }
};
struct IeeeExp {
  template <typename Dtype>
  CT_INLINE Dtype operator()(Dtype v) const { return std::exp(v); }
};

template <typename Dtype>
CT_INLINE Dtype RowMax(const Dtype* x, int n) {
  Dtype m = x[0];
#pragma omp simd reduction(max : m)
  for (int c = 1; c < n; ++c) m = Larger(m, x[c]);
  return m;
}

// Writes e_c = exp(b (x_c - m)) to e and returns sum e_c.
template <typename Exp, typename Dtype>
CT_INLINE Dtype RowExpSum(Exp exp, const Dtype* x, int n, Dtype b, Dtype m,
                          Dtype* e) {
  Dtype sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int c = 0; c < n; ++c) {
    e[c] = exp(b * (x[c] - m));
    sum += e[c];
  }
  return sum;
}

// With m = max_c x_c: writes *max = m and e_c = exp(b (x_c - m)) to e, and
// returns sum_c e_c. e may alias x.
template <typename Dtype>
CT_INLINE Dtype RowSoftmaxSum(const Dtype* x, int n, Dtype b, Dtype* e,
                              Dtype* max) {
  Dtype m = x[0];
  auto widest = MagnitudeBits(x[0]);
#pragma omp simd reduction(max : m, widest)
  for (int c = 0; c < n; ++c) {
    m = Larger(m, x[c]);
    widest = Larger(widest, MagnitudeBits(x[c]));
  }
  *max = m;
  return IsSpecialMagnitude(widest) ? RowExpSum(IeeeExp(), x, n, b, m, e)
                                    : RowExpSum(FastExp(), x, n, b, m, e);
}

// Whether some total[i], i < w, is an infinity or a NaN: one vectorised pass,
// so that the strips (nearly all) that hold none skip the per-position test.
template <typename Dtype>
CT_INLINE bool AnySpecial(const Dtype* total, int w) {
  int count = 0;
#pragma omp simd reduction(+ : count)
  for (int i = 0; i < w; ++i) count += IsSpecial(total[i]);
  return count > 0;
}

// A beta for every position of a strip: b[i] for an array, or one value.
template <typename Dtype>
struct SameBeta {
  Dtype value;
  Dtype operator[](int) const { return value; }
};

// The positions of a strip whose logits hold an infinity or a NaN (total[i]
// not finite), with a copy of their logits taken before the fast pass, which
// may overwrite them: Redo gives them std::exp's IEEE exps, channel by
// channel as the fast pass sums them.
template <typename Dtype>
class SpecialPositions {
 public:
  CT_INLINE SpecialPositions(const Dtype* x, int channels, int stride, int w,
                             const Dtype* total)
      : channels_(channels) {
    const bool any = AnySpecial(total, w);
    for (int i = 0; any && i < w; ++i) {
      if (!IsSpecial(total[i])) continue;
      positions_.push_back(i);
      for (int c = 0; c < channels; ++c) x_.push_back(x[c * stride + i]);
    }
  }

  template <typename Betas>
  CT_INLINE void Redo(const Betas& b, const Dtype* m, int stride, Dtype* e,
                      Dtype* sum) const {
    for (size_t j = 0; j < positions_.size(); ++j) {
      const int i = positions_[j];
      sum[i] = 0;
      for (int c = 0; c < channels_; ++c) {
        const Dtype v = std::exp(b[i] * (x_[j * channels_ + c] - m[i]));
        e[c * stride + i] = v;
        sum[i] += v;
      }
    }
  }

 private:
  int channels_;
  std::vector<int> positions_;
  std::vector<Dtype> x_;
};

// The strip form of RowSoftmaxSum over w positions, element (c, i) at
// x[c * stride + i]; per position i: m[i], total[i] = the sum of |x_c| (not
// finite, or at least a cap, where a logit is: the infogain loss's test for
// infinite terms), the exps e and sum[i]. e may alias x.
//
// A loss takes its own per-position sum of terms of the logits in the same
// loop, from the logits in registers (1.1x faster at 8 x 21 x 128 x 128 than
// a loop of its own after each group): terms.Prepare(c, group) runs before
// the exps of each channel group, and per position i
//   t = terms.Begin(i); terms.Add(t, k, i, x_k, m[i]) for each channel k of
//   the group; terms.End(i, t).
// Such a loss must not pass an e that aliases x.
template <typename Dtype, typename Betas, typename Terms>
CT_INLINE void StripSoftmaxSums(const Dtype* x, int channels, int stride,
                                int w, const Betas& b, Dtype* m, Dtype* total,
                                Dtype* e, Dtype* sum, const Terms& terms) {
  std::copy(x, x + w, m);
  std::fill(total, total + w, Dtype(0));
  ForChannelGroups(channels, [&](int c, auto group) CT_LAMBDA_INLINE {
    const Dtype* xc = x + c * stride;
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      Dtype max = m[i], size = total[i];
      for (int k = 0; k < group(); ++k) {
        max = Larger(max, xc[k * stride + i]);
        size += std::abs(xc[k * stride + i]);
      }
      m[i] = max;
      total[i] = size;
    }
  });
  const SpecialPositions<Dtype> special(x, channels, stride, w, total);
  std::fill(sum, sum + w, Dtype(0));
  ForChannelGroups(channels, [&](int c, auto group) CT_LAMBDA_INLINE {
    const Dtype* xc = x + c * stride;
    Dtype* ec = e + c * stride;
    terms.Prepare(c, group);
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      Dtype s = sum[i];
      Dtype t = terms.Begin(i);
      StoreGroup(group, ec + i, stride, [&](int k) CT_LAMBDA_INLINE {
        const Dtype xk = xc[k * stride + i];
        const Dtype v = ExpNonPositive(b[i] * (xk - m[i]));
        terms.Add(t, k, i, xk, m[i]);
        s += v;
        return v;
      });
      sum[i] = s;
      terms.End(i, t);
    }
  });
  special.Redo(b, m, stride, e, sum);
}

// For the softmaxes, which take nothing more from the logits.
template <typename Dtype>
struct NoChannelTerms {
  template <typename Group>
  CT_INLINE void Prepare(int, Group) const {}
  CT_INLINE Dtype Begin(int) const { return 0; }
  CT_INLINE void Add(Dtype&, int, int, Dtype, Dtype) const {}
  CT_INLINE void End(int, Dtype) const {}
};

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SRC_SOFTMAX_SUMS_HPP_
