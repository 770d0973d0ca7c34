// SoftmaxWithInfogainLoss's CPU kernels: the loss with the probabilities,
// and the gradient. Built with -ffast-math -fopenmp-simd, as
// softmax_kernels.cpp is; the row and strip bodies below run through
// kernel_layout.hpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/streaming.hpp"
#include "caffe_temperature/vector_math.hpp"
#include "infogain_columns.hpp"
#include "kernel_instantiations.hpp"
#include "kernel_layout.hpp"
#include "softmax_sums.hpp"

namespace caffe_temperature {

namespace {

// With m = max_c x_c and S = sum_c exp(x_c - m), a position's loss
//   -sum_c H[l, c] (x_c - m - log S) = sum_rows_H[l] log S
//                                      + sum_c H[l, c] (m - x_c)
// needs no log-probability blob, and for H >= 0 both terms are >= 0, so
// nothing cancels.

// Far above any real logit gap m - x: only a -inf logit (a masked class)
// reaches it.
template <typename Dtype>
CT_INLINE Dtype GapCap() {
  return sizeof(Dtype) == 4 ? Dtype(1e30) : Dtype(1e300);
}

// m - x, capped: a -inf logit then adds H[l, c] * cap, which is 0 where
// H[l, c] = 0 (0 log 0 = 0) instead of 0 * inf = NaN. A cap, not a test for
// H == 0, because fast-math lets the compiler drop such a test; it cannot drop
// a cap a finite value may exceed.
template <typename Dtype>
CT_INLINE Dtype GapToMax(Dtype m, Dtype x) {
  return Smaller(m - x, GapCap<Dtype>());
}

// Whether a gap of a position can reach the cap, from `bound`, at least
// every gap m - x_c of the position (its largest gap, or the sum of its
// logits' sizes) where they are finite, and not finite where a logit is not.
template <typename Dtype>
CT_INLINE bool GapMayReachCap(Dtype bound) {
  return IsSpecial(bound) || bound >= GapCap<Dtype>() / 2;
}

// h where the gap reached the cap, else 0. The term is then -h log 0, +inf
// for h > 0 and -inf for h < 0, which fast-math code cannot produce: the
// kernel keeps the largest and the smallest of these values for the caller
// to apply the infinities. The comparison stays, for the reason the cap does.
template <typename Dtype>
CT_INLINE Dtype InfiniteTermWeight(Dtype h, Dtype m, Dtype x) {
  return m - x >= GapCap<Dtype>() ? h : Dtype(0);
}

// The strip loops' sum_c H[l, c] (m - x_c) per position (StripSoftmaxSums'
// terms), from the columns of H for the classes of the strip's positions,
// which each channel group looks up into h before its loop.
template <typename Dtype>
struct GapTerms {
  const HColumns<Dtype>* columns;
  const int* classes;
  int w;
  Dtype (*h)[kStrip];
  Dtype* dot;
  template <typename Group>
  CT_INLINE void Prepare(int c, Group group) const {
    columns->Fill(c, group, classes, w, h);
  }
  CT_INLINE Dtype Begin(int i) const { return dot[i]; }
  CT_INLINE void Add(Dtype& d, int k, int i, Dtype x, Dtype m) const {
    d += h[k][i] * (m - x);
  }
  CT_INLINE void End(int i, Dtype d) const { dot[i] = d; }
};

// The loss and prob = softmax(x). Each work item writes its loss to
// item_loss[item] (summed in item order, whatever the thread count) and the
// largest and smallest InfiniteTermWeight it met (> 0 and < 0 mark +inf and
// -inf) to extremes[2 * item] and extremes[2 * item + 1]. Short rows take
// the strip passes over tiles, as the softmax forward does (131072 x 21,
// 1 thread: 11.2 ms as rows).
template <typename Dtype>
struct InfogainForward : LayoutKernel {
  static const bool kShortRowTiles = true;
  InfogainForward(const SoftmaxShape& shape, const Dtype* x,
                  const int* position_classes, const Dtype* H,
                  const Dtype* sum_rows_H, const HColumnTable<Dtype>& table,
                  Dtype* prob, Dtype* item_loss, Dtype* extremes)
      : C(shape.channels), x(x), classes(position_classes), H(H),
        sum_rows_H(sum_rows_H), y(prob), item_loss(item_loss),
        extremes(extremes), columns(H, shape.channels, table) {}

  CT_INLINE void RowBody(int o) const {
    const Dtype* xo = x + o * C;
    Dtype* po = y + o * C;
    Dtype m;
    const Dtype sum = RowSoftmaxSum(xo, C, Dtype(1), po, &m);
    const Dtype inv = Dtype(1) / sum;
    const int l = classes[o];
    // One pass scales the row and takes its loss terms; an ignored row's
    // (from row 0 of H) are dropped.
    const Dtype* h = H + std::max(l, 0) * C;
    Dtype dot = 0, smallest = xo[0];
#pragma omp simd reduction(+ : dot) reduction(min : smallest)
    for (int c = 0; c < C; ++c) {
      po[c] *= inv;
      dot += h[c] * (m - xo[c]);
      smallest = Smaller(smallest, xo[c]);
    }
    item_loss[o] = 0;
    extremes[2 * o] = extremes[2 * o + 1] = 0;
    if (l < 0) return;
    // As in the strips: only a row whose largest gap may reach the cap is
    // redone with the capped gaps and its infinite terms.
    if (GapMayReachCap(m - smallest)) {
      Dtype most = 0, least = 0;
      dot = 0;
#pragma omp simd reduction(+ : dot) reduction(max : most) \
    reduction(min : least)
      for (int c = 0; c < C; ++c) {
        dot += h[c] * GapToMax(m, xo[c]);
        const Dtype weight = InfiniteTermWeight(h[c], m, xo[c]);
        most = Larger(most, weight);
        least = Smaller(least, weight);
      }
      extremes[2 * o] = most;
      extremes[2 * o + 1] = least;
    }
    item_loss[o] = sum_rows_H[l] * std::log(sum) + dot;
  }

  // The exps to es and the inverse of each position's sum of exps to scale.
  CT_INLINE void StripBody(const Strip& s, const Dtype* xs, Dtype* es,
                           Dtype* scale) const {
    alignas(64) Dtype m[kStrip], total[kStrip], dot[kStrip], weight[kStrip],
        row_sum[kStrip], h[kChannelGroup][kStrip];
    alignas(64) int strip_classes[kStrip];
    const int w = s.w, stride = s.stride;
    StripClasses(classes + s.position, sum_rows_H, w, strip_classes, weight,
                 row_sum);
    std::fill(dot, dot + w, Dtype(0));
    const GapTerms<Dtype> gap_terms = {&columns, strip_classes, w, h, dot};
    const SameBeta<Dtype> one = {1};
    StripSoftmaxSums(xs, C, stride, w, one, m, total, es, scale, gap_terms);
    // A gap reaches the cap only where the logits' sum of sizes, which
    // bounds every gap, does (or holds an infinity or a NaN): those few
    // positions are redone with the capped gaps and their infinite terms.
    Dtype most = 0, least = 0;
    int capped = 0;
#pragma omp simd reduction(+ : capped)
    for (int i = 0; i < w; ++i) capped += GapMayReachCap(total[i]);
    for (int i = 0; capped > 0 && i < w; ++i) {
      if (!GapMayReachCap(total[i])) continue;
      const Dtype* hl = H + strip_classes[i] * C;
      dot[i] = 0;
      for (int c = 0; c < C; ++c) {
        const Dtype xc = xs[c * stride + i];
        dot[i] += hl[c] * GapToMax(m[i], xc);
        // weight 0: an ignored position has no infinite term.
        const Dtype infinite =
            InfiniteTermWeight(weight[i] * hl[c], m[i], xc);
        most = Larger(most, infinite);
        least = Smaller(least, infinite);
      }
    }
    Dtype loss = 0;
#pragma omp simd reduction(+ : loss)
    for (int i = 0; i < w; ++i) {
      loss += row_sum[i] * std::log(scale[i]) + weight[i] * dot[i];
      scale[i] = Dtype(1) / scale[i];
    }
    item_loss[s.item] = loss;
    extremes[2 * s.item] = most;
    extremes[2 * s.item + 1] = least;
  }

  int C;
  const Dtype* x;
  const int* classes;
  const Dtype *H, *sum_rows_H;
  Dtype *y, *item_loss, *extremes;
  HColumns<Dtype> columns;
};

// dx_c = scale * (prob_c * sum_rows_H[l] - H[l, c]), 0 at ignored positions.
template <typename Dtype>
struct InfogainBackward : LayoutKernel {
  InfogainBackward(const SoftmaxShape& shape, const Dtype* prob,
                   const int* position_classes, const Dtype* H,
                   const Dtype* sum_rows_H, const HColumnTable<Dtype>& table,
                   Dtype scale, Dtype* dx)
      : C(shape.channels), prob(prob), classes(position_classes), H(H),
        sum_rows_H(sum_rows_H), scale(scale), dx(dx),
        columns(H, shape.channels, table) {
    stream = StreamsOutput(shape.count(), sizeof(Dtype));
  }

  CT_INLINE void RowBody(int o) const {
    const Dtype* po = prob + o * C;
    const int l = classes[o];
    if (l < 0) {
      WriteValues(dx + o * C, C, stream,
                  [](int) CT_LAMBDA_INLINE { return Dtype(0); });
      return;
    }
    // Locals, not members, in the loop: GCC cannot tell a store to dx from
    // a write to the kernel's own float members.
    const Dtype h_scale = scale, p_scale = h_scale * sum_rows_H[l];
    const Dtype* h = H + l * C;
    WriteValues(dx + o * C, C, stream, [&](int c) CT_LAMBDA_INLINE {
      return p_scale * po[c] - h_scale * h[c];
    });
  }

  CT_INLINE void StripBody(const Strip& s) const {
    alignas(64) Dtype weight[kStrip], row_sum[kStrip],
        h[kChannelGroup][kStrip];
    alignas(64) int strip_classes[kStrip];
    const int w = s.w, stride = s.stride;
    StripClasses(classes + s.position, sum_rows_H, w, strip_classes, weight,
                 row_sum);
#pragma omp simd
    for (int i = 0; i < w; ++i) row_sum[i] *= scale;
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      columns.Fill(c, group, strip_classes, w, h);
      const int at = s.offset + c * stride;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        const Dtype p_scale = row_sum[i];
        // Selected, not multiplied by a zero weight: the NaN probabilities
        // of an ignored position must not reach its gradient.
        const bool valid = weight[i] != 0;
        // StoreGroup's order, written out: GCC 12 leaves the loop scalar
        // when this selection is made inside a lambda.
        Dtype g[group()];
        for (int k = 0; k < group(); ++k) {
          const Dtype v =
              p_scale * prob[at + k * stride + i] - scale * h[k][i];
          g[k] = valid ? v : Dtype(0);
        }
        for (int k = 0; k < group(); ++k) dx[at + k * stride + i] = g[k];
      }
    });
  }

  int C;
  const Dtype* prob;
  const int* classes;
  const Dtype *H, *sum_rows_H;
  Dtype scale;
  Dtype* dx;
  HColumns<Dtype> columns;
};

CT_LAYOUT_CLONES(InfogainForward)
CT_LAYOUT_CLONES(InfogainBackward)

}  // namespace

template <typename Dtype>
Dtype InfogainLossForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                             const int* position_classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype* prob,
                             bool* plus_inf, bool* minus_inf) {
  const int items = LayoutItems<InfogainForward<Dtype> >(shape);
  std::vector<Dtype> item_loss(items), extremes(2 * items);
  const HColumnTable<Dtype> table(H, shape.channels,
                                  UsesStrips<InfogainForward<Dtype> >(shape));
  RunLayout(shape, InfogainForward<Dtype>(shape, x, position_classes, H,
                                          sum_rows_H, table, prob,
                                          item_loss.data(), extremes.data()));
  // In item order, on one thread: the same sum for any thread count.
  Dtype loss = 0, most = 0, least = 0;
  for (int t = 0; t < items; ++t) {
    loss += item_loss[t];
    most = std::max(most, extremes[2 * t]);
    least = std::min(least, extremes[2 * t + 1]);
  }
  *plus_inf = most > 0;
  *minus_inf = least < 0;
  return loss;
}

template <typename Dtype>
void InfogainLossBackwardCPU(const SoftmaxShape& shape, const Dtype* prob,
                             const int* position_classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype scale, Dtype* dx) {
  const HColumnTable<Dtype> table(
      H, shape.channels, UsesStrips<InfogainBackward<Dtype> >(shape));
  RunLayout(shape, InfogainBackward<Dtype>(shape, prob, position_classes, H,
                                           sum_rows_H, table, scale, dx));
}

CT_INSTANTIATE_INFOGAIN_KERNELS(float)
CT_INSTANTIATE_INFOGAIN_KERNELS(double)

}  // namespace caffe_temperature
