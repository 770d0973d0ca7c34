// Built with -ffast-math -fopenmp-simd (see CMakeLists.txt): `#pragma omp simd`
// loops then inline the float exp of vector_math.hpp, or call glibc's vector
// exp and log (libmvec) for doubles and IEEE cases. The work of each public
// entry point is compiled for x86-64-v4 (AVX-512), -v3 (AVX2 + FMA) and the
// baseline and picked at load time, so a build made on one machine still runs
// on an older one; the entry points themselves split that work between OpenMP
// threads (parallel.hpp), outside the clones, whose bodies are then vectorised
// for each clone's ISA.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "caffe_temperature/cpu_clones.hpp"
#include "caffe_temperature/parallel.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/streaming.hpp"
#include "caffe_temperature/vector_math.hpp"

namespace caffe_temperature {

namespace {

// Positions processed together when inner > 1: the loops run over contiguous
// inner positions (vectorised), channel by channel. A strip makes one pass
// over the channels per blob it streams, and wide strips give each channel a
// long contiguous run (8 KiB of floats), which the hardware prefetcher needs
// to keep up when the channel stride is large (1.2-1.3x faster than 256
// positions at 8 x 21 x 128 x 128); the per-position arrays live in L1 or L2.
const int kStrip = 2048;

template <typename Dtype>
CT_INLINE Dtype BetaAt(const BetaView<Dtype>& beta, int o, int i) {
  return beta.data[o * beta.outer_stride + i * beta.inner_stride];
}

template <typename Dtype>
CT_INLINE Dtype RowMax(const Dtype* x, int n) {
  Dtype m = x[0];
#pragma omp simd reduction(max : m)
  for (int c = 1; c < n; ++c) m = Larger(m, x[c]);
  return m;
}


// The exps of the softmax loops: ExpNonPositive where a vector is finite,
// std::exp (IEEE infinities and NaNs) where it is not (vector_math.hpp). A
// vector holds an infinity or a NaN exactly when the sum of its values is not
// finite (or the sum overflowed, which only costs the slower exp): the sum
// rides along with the max at one add per value, where testing each value's
// bits would slow that pass down by half.
struct FastExp {
  template <typename Dtype>
  Dtype operator()(Dtype v) const { return ExpNonPositive(v); }
};
struct IeeeExp {
  template <typename Dtype>
  Dtype operator()(Dtype v) const { return std::exp(v); }
};

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
// returns sum_c e_c.
template <typename Dtype>
CT_INLINE Dtype RowSoftmaxSum(const Dtype* x, int n, Dtype b, Dtype* e,
                              Dtype* max) {
  Dtype m = x[0], total = 0;
#pragma omp simd reduction(max : m) reduction(+ : total)
  for (int c = 0; c < n; ++c) {
    m = Larger(m, x[c]);
    total += x[c];
  }
  *max = m;
  return IsSpecial(total) ? RowExpSum(IeeeExp(), x, n, b, m, e)
                          : RowExpSum(FastExp(), x, n, b, m, e);
}

// The strip loops visit the channels in groups of kChannelGroup, each
// position's running values (max, sums) in registers across a group: one
// load and store of them per group instead of per channel (at 8 x 21 x 128 x
// 128 the forward took 1.2x less time than with a loop per channel). The
// per-position operations keep the channel order, so the bits do not change.
const int kChannelGroup = 4;

// Calls body(c, group) for channel groups starting at c, where group is an
// std::integral_constant<int, n> with n = kChannelGroup, or 1 for the channels
// left at the end: each group's count is a compile-time constant.
template <int kGroup = kChannelGroup, typename Body>
CT_INLINE void ForChannelGroups(int channels, const Body& body) {
  int c = 0;
  for (; c + kGroup <= channels; c += kGroup) {
    body(c, std::integral_constant<int, kGroup>());
  }
  for (; c < channels; ++c) body(c, std::integral_constant<int, 1>());
}

// Stores value(k) at out[k * inner] for the channels k of a group, computing
// (and loading) every value before the first store. The CPU treats a load as
// dependent on an earlier store whose address agrees with it in the low 12
// bits ("4K aliasing") and holds it back: with channels a multiple of 4 KiB
// apart (inner = 16384) and blobs that malloc aligns alike, each load of a
// group that followed a store of the group did, and the 8 x 21 x 128 x 128
// softmax forward took 1.25x longer (0.59 against 0.46 ns per value, 1
// thread, AVX2).
template <typename Dtype, typename Group, typename Value>
CT_INLINE void StoreGroup(Group group, Dtype* out, int inner,
                          const Value& value) {
  Dtype v[group()];
  for (int k = 0; k < group(); ++k) v[k] = value(k);
  for (int k = 0; k < group(); ++k) out[k * inner] = v[k];
}

// Strip helpers: element (c, i) of a strip starting at x is x[c * inner + i].
template <typename Dtype>
CT_INLINE void StripMax(const Dtype* x, int channels, int inner, int w,
                        Dtype* m) {
  std::copy(x, x + w, m);
  ForChannelGroups(channels, [&](int c, auto group) CT_LAMBDA_INLINE {
    const Dtype* xc = x + c * inner;
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      Dtype max = m[i];
      for (int k = 0; k < group(); ++k) max = Larger(max, xc[k * inner + i]);
      m[i] = max;
    }
  });
}

// A beta for every position of a strip: b[i] for an array, or one value.
template <typename Dtype>
struct SameBeta {
  Dtype value;
  Dtype operator[](int) const { return value; }
};

// Calls run(betas) with the betas of the strip of w positions from (o, i0):
// one value where beta does not vary along the positions (a constant, or
// one per outer index), else an array of them in b.
template <typename Dtype, typename Run>
CT_INLINE void WithStripBetas(const BetaView<Dtype>& beta, int o, int i0,
                              int w, Dtype* b, const Run& run) {
  if (beta.inner_stride == 0) {
    run(SameBeta<Dtype>{BetaAt(beta, o, 0)});
    return;
  }
  for (int i = 0; i < w; ++i) b[i] = BetaAt(beta, o, i0 + i);
  run(static_cast<const Dtype*>(b));
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

// The strip form of RowSoftmaxSum, per position i: m[i], total[i] = the sum
// of |x_c| (not finite, or at least a cap, where a logit is: the loss layers'
// test for infinite terms), the exps e and sum[i]. e may alias x. All
// positions take the fast exp, then the few holding an infinity or a NaN are
// redone with std::exp, channel by channel as the fast pass sums them, from
// a copy of their logits taken before the fast pass (which may overwrite
// them). A loss takes its own per-position sum of terms of the logits in the
// same loop, from the logits in registers (1.1x faster at 8 x 21 x 128 x 128
// than a loop of its own after each group): terms.Prepare(c, group) runs
// before the exps of each channel group, and per position i
//   t = terms.Begin(i); terms.Add(t, k, i, x_k, m[i]) for each channel k of
//   the group; terms.End(i, t).
// Such a loss must not pass an e that aliases x.
template <typename Dtype, typename Betas, typename Terms>
CT_INLINE void StripSoftmaxSums(const Dtype* x, int channels, int inner,
                                int w, const Betas& b, Dtype* m, Dtype* total,
                                Dtype* e, Dtype* sum, const Terms& terms) {
  std::copy(x, x + w, m);
  std::fill(total, total + w, Dtype(0));
  ForChannelGroups(channels, [&](int c, auto group) CT_LAMBDA_INLINE {
    const Dtype* xc = x + c * inner;
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      Dtype max = m[i], size = total[i];
      for (int k = 0; k < group(); ++k) {
        max = Larger(max, xc[k * inner + i]);
        size += std::abs(xc[k * inner + i]);
      }
      m[i] = max;
      total[i] = size;
    }
  });
  std::vector<int> special;
  std::vector<Dtype> special_x;
  const bool any_special = AnySpecial(total, w);
  for (int i = 0; any_special && i < w; ++i) {
    if (!IsSpecial(total[i])) continue;
    special.push_back(i);
    for (int c = 0; c < channels; ++c) special_x.push_back(x[c * inner + i]);
  }
  std::fill(sum, sum + w, Dtype(0));
  ForChannelGroups(channels, [&](int c, auto group) CT_LAMBDA_INLINE {
    const Dtype* xc = x + c * inner;
    Dtype* ec = e + c * inner;
    terms.Prepare(c, group);
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      Dtype s = sum[i];
      Dtype t = terms.Begin(i);
      StoreGroup(group, ec + i, inner, [&](int k) CT_LAMBDA_INLINE {
        const Dtype xk = xc[k * inner + i];
        const Dtype v = ExpNonPositive(b[i] * (xk - m[i]));
        terms.Add(t, k, i, xk, m[i]);
        s += v;
        return v;
      });
      sum[i] = s;
      terms.End(i, t);
    }
  });
  for (size_t j = 0; j < special.size(); ++j) {
    const int i = special[j];
    sum[i] = 0;
    for (int c = 0; c < channels; ++c) {
      const Dtype v = std::exp(b[i] * (special_x[j * channels + c] - m[i]));
      e[c * inner + i] = v;
      sum[i] += v;
    }
  }
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

// y_c *= inv over a strip, inv per position.
template <typename Dtype>
CT_INLINE void StripScale(Dtype* y, int channels, int inner, int w,
                          const Dtype* inv) {
  ForChannelGroups(channels, [&](int c, auto group) CT_LAMBDA_INLINE {
    Dtype* yc = y + c * inner;
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      const Dtype scale = inv[i];
      StoreGroup(group, yc + i, inner, [&](int k) CT_LAMBDA_INLINE {
        return yc[k * inner + i] * scale;
      });
    }
  });
}

// Rows of at most kShortRow classes (a detector's 21 classes over its
// priors, say) are softmaxed a block of rows at a time in strip form, each
// block transposed into a tile [class][row]: a loop over one short row is
// mostly the set-up, the remainder and the horizontal reductions of its few
// vectors. 2.75M floats, 1 thread (GCC 12, AVX2): rows of 5, 8, 12, 21 and
// 31 classes took 31, 23, 19, 8.6 and 9.0 ms, tiles 3.1-5.1 ms; rows of a
// multiple of 16 classes stay rows (16 and 32: 3.4 and 2.2 ms, tiles 4.8 and
// 4.4), as do longer ones (tiles of 33-64 classes were no faster).
const int kShortRow = 32;
const int kShortRowBlock = 256;

inline bool ShortRows(int channels) {
  return channels <= kShortRow && channels % 16 != 0;
}

// Work items of the softmax and infogain forwards: blocks of kShortRowBlock
// short rows, which a thread must take whole (a row's bits depend on where
// its block starts: a vector loop's remainder runs other instructions), else
// StripItems' rows or strips.
inline int ForwardItems(const SoftmaxShape& s) {
  return s.inner == 1 && ShortRows(s.channels)
             ? (s.outer + kShortRowBlock - 1) / kShortRowBlock
             : StripItems(s.outer, s.inner, kStrip);
}

// tile[c * w + r] = rows[r * C + c] for the w rows of C classes at rows.
template <typename Dtype>
CT_INLINE void ToTile(const Dtype* rows, int C, int w, Dtype* tile) {
  for (int r = 0; r < w; ++r) {
    for (int c = 0; c < C; ++c) tile[c * w + r] = rows[r * C + c];
  }
}

// rows[r * C + c] = tile[c * w + r] * scale[r].
template <typename Dtype>
CT_INLINE void FromTile(const Dtype* tile, int C, int w, const Dtype* scale,
                        Dtype* rows) {
  for (int r = 0; r < w; ++r) {
    for (int c = 0; c < C; ++c) rows[r * C + c] = tile[c * w + r] * scale[r];
  }
}

// Blocks [begin, end) of kShortRowBlock rows of at most kShortRow classes:
// the same strip passes (StripSoftmaxSums) as inner > 1, over tiles in L1. y
// may alias x: a block is read whole before it is written.
template <typename Dtype>
CT_INLINE void ShortRowsForward(const SoftmaxShape& s, int begin, int end,
                                const Dtype* x, const BetaView<Dtype>& beta,
                                Dtype* y) {
  const int C = s.channels;
  alignas(64) Dtype tile[kShortRow * kShortRowBlock], m[kShortRowBlock],
      b[kShortRowBlock], total[kShortRowBlock], sum[kShortRowBlock];
  // Beta varies along the rows unless it is one value: a block's rows are
  // its strip's positions.
  const BetaView<Dtype> rows = {beta.data, 0, beta.outer_stride};
  for (int block = begin; block < end; ++block) {
    const int o0 = block * kShortRowBlock;
    const int w = std::min(kShortRowBlock, s.outer - o0);
    ToTile(x + o0 * C, C, w, tile);
    WithStripBetas(rows, 0, o0, w, b,
                   [&](const auto& betas) CT_LAMBDA_INLINE {
                     StripSoftmaxSums(tile, C, w, w, betas, m, total, tile,
                                      sum, NoChannelTerms<Dtype>());
                   });
    for (int r = 0; r < w; ++r) sum[r] = Dtype(1) / sum[r];
    FromTile(tile, C, w, sum, y + o0 * C);
  }
}

template <typename Dtype>
CT_INLINE void SoftmaxForwardImpl(const SoftmaxShape& s, int begin, int end,
                                  const Dtype* x, const BetaView<Dtype>& beta,
                                  Dtype* y) {
  const int C = s.channels, inner = s.inner;
  if (inner == 1 && ShortRows(C)) {
    ShortRowsForward(s, begin, end, x, beta, y);
    return;
  }
  if (inner == 1) {
    for (int o = begin; o < end; ++o) {
      const Dtype* xo = x + o * C;
      Dtype* yo = y + o * C;
      Dtype m;
      const Dtype inv =
          Dtype(1) / RowSoftmaxSum(xo, C, BetaAt(beta, o, 0), yo, &m);
#pragma omp simd
      for (int c = 0; c < C; ++c) yo[c] *= inv;
    }
    return;
  }
  alignas(64) Dtype m[kStrip], b[kStrip], total[kStrip], sum[kStrip];
  for (int t = begin; t < end; ++t) {
    int o, i0;
    StripOf(t, inner, kStrip, &o, &i0);
    const int w = std::min(kStrip, inner - i0);
    const Dtype* xs = x + o * C * inner + i0;
    Dtype* ys = y + o * C * inner + i0;
    WithStripBetas(beta, o, i0, w, b, [&](const auto& betas) CT_LAMBDA_INLINE {
      StripSoftmaxSums(xs, C, inner, w, betas, m, total, ys, sum,
                       NoChannelTerms<Dtype>());
    });
    for (int i = 0; i < w; ++i) sum[i] = Dtype(1) / sum[i];
    StripScale(ys, C, inner, w, sum);
  }
}

template <typename Dtype>
CT_INLINE void SoftmaxBackwardImpl(const SoftmaxShape& s, int begin, int end,
                                   const Dtype* y, const Dtype* dy,
                                   const BetaView<Dtype>& beta, Dtype* dx) {
  const int C = s.channels, inner = s.inner;
  if (inner == 1) {
    const bool stream = StreamsOutput(s.count(), sizeof(Dtype));
    for (int o = begin; o < end; ++o) {
      const Dtype* yo = y + o * C;
      const Dtype* dyo = dy + o * C;
      Dtype dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int c = 0; c < C; ++c) dot += dyo[c] * yo[c];
      const Dtype b = BetaAt(beta, o, 0);
      WriteValues(dx + o * C, C, stream, [&](int c) CT_LAMBDA_INLINE {
        return b * yo[c] * (dyo[c] - dot);
      });
    }
    if (stream) StreamFence();
    return;
  }
  alignas(64) Dtype b[kStrip], dot[kStrip];
  for (int t = begin; t < end; ++t) {
    int o, i0;
    StripOf(t, inner, kStrip, &o, &i0);
    const int w = std::min(kStrip, inner - i0);
    const int offset = o * C * inner + i0;
    std::fill(dot, dot + w, Dtype(0));
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const Dtype* yc = y + offset + c * inner;
      const Dtype* dyc = dy + offset + c * inner;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype d = dot[i];
        for (int k = 0; k < group(); ++k) {
          d += dyc[k * inner + i] * yc[k * inner + i];
        }
        dot[i] = d;
      }
    });
    WithStripBetas(beta, o, i0, w, b, [&](const auto& betas) CT_LAMBDA_INLINE {
      ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
        const int at = offset + c * inner;
#pragma omp simd
        for (int i = 0; i < w; ++i) {
          const Dtype bi = betas[i], di = dot[i];
          StoreGroup(group, dx + at + i, inner, [&](int k) CT_LAMBDA_INLINE {
            const int j = at + k * inner + i;
            return bi * y[j] * (dy[j] - di);
          });
        }
      });
    });
  }
}

template <typename Dtype>
CT_INLINE void SoftmaxBetaGradientImpl(const SoftmaxShape& s, int begin,
                                       int end, const Dtype* x, const Dtype* y,
                                       const Dtype* dy, Dtype* g) {
  const int C = s.channels, inner = s.inner;
  // With d = x - m: sum_c dy_c y_c (d_c - E_y[d]) equals
  // sum_c dy_c y_c d_c - (sum_c dy_c y_c) E_y[d] for any shift m. Shifting by
  // the max keeps the two terms from cancelling at the size of |x| (large
  // logits, or one y_c close to 1).
  if (inner == 1) {
    for (int o = begin; o < end; ++o) {
      const Dtype* xo = x + o * C;
      const Dtype* yo = y + o * C;
      const Dtype* dyo = dy + o * C;
      const Dtype m = RowMax(xo, C);
      Dtype mean = 0, dot = 0, dot_d = 0;
#pragma omp simd reduction(+ : mean, dot, dot_d)
      for (int c = 0; c < C; ++c) {
        const Dtype d = xo[c] - m;
        mean += yo[c] * d;
        dot += dyo[c] * yo[c];
        dot_d += dyo[c] * yo[c] * d;
      }
      g[o] = dot_d - dot * mean;
    }
    return;
  }
  alignas(64) Dtype m[kStrip], mean[kStrip], dot[kStrip], dot_d[kStrip];
  for (int t = begin; t < end; ++t) {
    int o, i0;
    StripOf(t, inner, kStrip, &o, &i0);
    const int w = std::min(kStrip, inner - i0);
    const int offset = o * C * inner + i0;
    StripMax(x + offset, C, inner, w, m);
    std::fill(mean, mean + w, Dtype(0));
    std::fill(dot, dot + w, Dtype(0));
    std::fill(dot_d, dot_d + w, Dtype(0));
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const int at = offset + c * inner;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype mean_i = mean[i], dot_i = dot[i], dot_d_i = dot_d[i];
        for (int k = 0; k < group(); ++k) {
          const int j = at + k * inner + i;
          const Dtype d = x[j] - m[i];
          mean_i += y[j] * d;
          dot_i += dy[j] * y[j];
          dot_d_i += dy[j] * y[j] * d;
        }
        mean[i] = mean_i;
        dot[i] = dot_i;
        dot_d[i] = dot_d_i;
      }
    });
    Dtype* go = g + o * inner + i0;
#pragma omp simd
    for (int i = 0; i < w; ++i) go[i] = dot_d[i] - dot[i] * mean[i];
  }
}

// Strip form of the positions' classes: each position's class (0 where
// ignored, so that every look-up stays inside H), weight (1, or 0 where
// ignored) and sum_rows_H of its class (0 where ignored).
template <typename Dtype>
CT_INLINE void StripClasses(const int* position_classes,
                            const Dtype* sum_rows_H, int w, int* classes,
                            Dtype* weight, Dtype* row_sum) {
  for (int i = 0; i < w; ++i) {
    const bool valid = position_classes[i] >= 0;
    classes[i] = valid ? position_classes[i] : 0;
    weight[i] = valid ? Dtype(1) : Dtype(0);
    row_sum[i] = valid ? sum_rows_H[classes[i]] : Dtype(0);
  }
}

// H[l_i, c + k] for the positions i of a strip and the channels c + k of a
// group, for the strip loops to read as plain arrays h[k]. Each position has
// its own label, so this is a gather, which x86 does one element at a time
// (AVX2's gather instruction was slower still): at 8 x 21 x 128 x 128 it took
// a third of the infogain backward. For floats and at most kTableClasses
// classes, column c of H fits in four 8-float registers and a vector of 8
// positions looks its values up with register permutes (vpermps) instead,
// the permute indices and table selections of its labels shared by the
// group's channels.
template <typename Dtype>
class HColumns {
 public:
  HColumns(const Dtype* H, int channels) : H_(H), channels_(channels) {}
  template <typename Group>
  CT_INLINE void Fill(int c, Group group, const int* classes, int w,
                      Dtype (*h)[kStrip]) const {
    for (int k = 0; k < group(); ++k) {
      const Dtype* hc = H_ + c + k;
      for (int i = 0; i < w; ++i) h[k][i] = hc[classes[i] * channels_];
    }
  }

 private:
  const Dtype* H_;
  int channels_;
};

template <>
class HColumns<float> {
 public:
  static const int kTableClasses = 32;
  HColumns(const float* H, int channels) : H_(H), channels_(channels) {
    if (channels > kTableClasses) return;
    for (int c = 0; c < channels; ++c) {
      std::fill(columns_[c], columns_[c] + kTableClasses, 0.0f);
      for (int l = 0; l < channels; ++l) columns_[c][l] = H[l * channels + c];
    }
  }
  template <typename Group>
  CT_INLINE void Fill(int c, Group group, const int* classes, int w,
                      float (*h)[kStrip]) const {
    int i = 0;
    switch (channels_ <= kTableClasses ? (channels_ + 7) / 8 : 0) {
      case 1: i = FillTables<1>(c, group, classes, w, h); break;
      case 2: i = FillTables<2>(c, group, classes, w, h); break;
      case 3: i = FillTables<3>(c, group, classes, w, h); break;
      case 4: i = FillTables<4>(c, group, classes, w, h); break;
    }
    for (int k = 0; k < group(); ++k) {
      const float* hc = H_ + c + k;
      for (int j = i; j < w; ++j) h[k][j] = hc[classes[j] * channels_];
    }
  }

 private:
  // The vectors of 8 positions, through kTables tables of 8 classes; returns
  // the first position left.
  template <int kTables, typename Group>
  CT_INLINE int FillTables(int c, Group group, const int* classes, int w,
                           float (*h)[kStrip]) const {
    typedef float Floats __attribute__((vector_size(32)));
    typedef int Ints __attribute__((vector_size(32)));
    int i = 0;
    for (; i + 8 <= w; i += 8) {
      Ints l;
      std::memcpy(&l, classes + i, sizeof l);
      const Ints low = l & 7, high = l >> 3;
      for (int k = 0; k < group(); ++k) {
        Floats table[kTables];
        std::memcpy(table, columns_[c + k], sizeof table);
        Floats v = __builtin_shuffle(table[0], low);
        for (int t = 1; t < kTables; ++t) {
          v = high == t ? __builtin_shuffle(table[t], low) : v;
        }
        std::memcpy(h[k] + i, &v, sizeof v);
      }
    }
    return i;
  }

  const float* H_;
  int channels_;
  alignas(32) float columns_[kTableClasses][kTableClasses];
};

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

// The per-position arrays of InfogainStrip.
template <typename Dtype>
struct InfogainStripArrays {
  alignas(64) Dtype m[kStrip], total[kStrip], sum[kStrip], dot[kStrip],
      weight[kStrip], row_sum[kStrip], h[kChannelGroup][kStrip];
  alignas(64) int classes[kStrip];
};

// The infogain forward over a strip of w positions, element (c, i) at
// x[c * stride + i], position i's class at position_classes[i]: writes the
// exps to e (which must not alias x) and the inverse of each position's sum
// of exps to a->sum, for the caller to scale e by, widens *most and *least
// as InfogainLossForwardImpl's extremes, and returns the strip's loss.
template <typename Dtype>
CT_INLINE Dtype InfogainStrip(const Dtype* x, int C, int stride, int w,
                             const int* position_classes, const Dtype* H,
                             const Dtype* sum_rows_H,
                             const HColumns<Dtype>& columns, Dtype* e,
                             InfogainStripArrays<Dtype>* a, Dtype* most,
                             Dtype* least) {
  StripClasses(position_classes, sum_rows_H, w, a->classes, a->weight,
               a->row_sum);
  Dtype* dot = a->dot;
  std::fill(dot, dot + w, Dtype(0));
  const GapTerms<Dtype> gap_terms = {&columns, a->classes, w, a->h, dot};
  const SameBeta<Dtype> one = {1};
  StripSoftmaxSums(x, C, stride, w, one, a->m, a->total, e, a->sum,
                   gap_terms);
  // A gap reaches the cap only where the logits' sum of sizes, which
  // bounds every gap, does (or holds an infinity or a NaN): those few
  // positions are redone with the capped gaps and their infinite terms.
  int capped = 0;
#pragma omp simd reduction(+ : capped)
  for (int i = 0; i < w; ++i) capped += GapMayReachCap(a->total[i]);
  for (int i = 0; capped > 0 && i < w; ++i) {
    if (!GapMayReachCap(a->total[i])) continue;
    const Dtype* hl = H + a->classes[i] * C;
    dot[i] = 0;
    for (int c = 0; c < C; ++c) {
      const Dtype xc = x[c * stride + i];
      dot[i] += hl[c] * GapToMax(a->m[i], xc);
      // weight 0: an ignored position has no infinite term.
      const Dtype infinite =
          InfiniteTermWeight(a->weight[i] * hl[c], a->m[i], xc);
      *most = Larger(*most, infinite);
      *least = Smaller(*least, infinite);
    }
  }
  Dtype loss = 0;
#pragma omp simd reduction(+ : loss)
  for (int i = 0; i < w; ++i) {
    loss += a->row_sum[i] * std::log(a->sum[i]) + a->weight[i] * dot[i];
    a->sum[i] = Dtype(1) / a->sum[i];
  }
  return loss;
}

// Writes each item's loss to item_loss[item] (the caller sums them in order,
// whatever the thread count) and widens extremes[0] and extremes[1] to the
// largest and smallest InfiniteTermWeight met (> 0 and < 0 mark +inf and
// -inf). Short rows (ShortRows) take the strip passes over tiles, as the
// softmax forward does (131072 x 21, 1 thread: 11.2 ms as rows).
template <typename Dtype>
CT_INLINE void InfogainLossForwardImpl(const SoftmaxShape& s, int begin,
                                       int end, const Dtype* x,
                                       const int* position_classes,
                                       const Dtype* H, const Dtype* sum_rows_H,
                                       Dtype* prob,
                                       Dtype* item_loss, Dtype* extremes) {
  const int C = s.channels, inner = s.inner;
  Dtype most = extremes[0], least = extremes[1];
  if (inner == 1 && !ShortRows(C)) {
    for (int o = begin; o < end; ++o) {
      const Dtype* xo = x + o * C;
      Dtype* po = prob + o * C;
      Dtype m;
      const Dtype sum = RowSoftmaxSum(xo, C, Dtype(1), po, &m);
      const Dtype inv = Dtype(1) / sum;
      const int l = position_classes[o];
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
      if (l < 0) continue;
      // As in the strips below: only a row whose largest gap may reach the
      // cap is redone with the capped gaps and its infinite terms.
      if (GapMayReachCap(m - smallest)) {
        dot = 0;
#pragma omp simd reduction(+ : dot) reduction(max : most) \
    reduction(min : least)
        for (int c = 0; c < C; ++c) {
          dot += h[c] * GapToMax(m, xo[c]);
          const Dtype weight = InfiniteTermWeight(h[c], m, xo[c]);
          most = Larger(most, weight);
          least = Smaller(least, weight);
        }
      }
      item_loss[o] = sum_rows_H[l] * std::log(sum) + dot;
    }
    extremes[0] = most;
    extremes[1] = least;
    return;
  }
  const HColumns<Dtype> columns(H, C);
  InfogainStripArrays<Dtype> a;
  if (inner == 1) {
    alignas(64) Dtype tile_x[kShortRow * kShortRowBlock],
        tile_e[kShortRow * kShortRowBlock];
    for (int block = begin; block < end; ++block) {
      const int o0 = block * kShortRowBlock;
      const int w = std::min(kShortRowBlock, s.outer - o0);
      ToTile(x + o0 * C, C, w, tile_x);
      item_loss[block] =
          InfogainStrip(tile_x, C, w, w, position_classes + o0, H,
                        sum_rows_H, columns, tile_e, &a, &most, &least);
      FromTile(tile_e, C, w, a.sum, prob + o0 * C);
    }
  } else {
    for (int t = begin; t < end; ++t) {
      int o, i0;
      StripOf(t, inner, kStrip, &o, &i0);
      const int w = std::min(kStrip, inner - i0);
      Dtype* ps = prob + o * C * inner + i0;
      item_loss[t] = InfogainStrip(x + o * C * inner + i0, C, inner, w,
                                   position_classes + o * inner + i0, H,
                                   sum_rows_H, columns, ps, &a, &most, &least);
      StripScale(ps, C, inner, w, a.sum);
    }
  }
  extremes[0] = most;
  extremes[1] = least;
}

template <typename Dtype>
CT_INLINE void InfogainLossBackwardImpl(const SoftmaxShape& s, int begin,
                                        int end, const Dtype* prob,
                                        const int* position_classes,
                                        const Dtype* H,
                                        const Dtype* sum_rows_H, Dtype scale,
                                        Dtype* dx) {
  const int C = s.channels, inner = s.inner;
  if (inner == 1) {
    const bool stream = StreamsOutput(s.count(), sizeof(Dtype));
    for (int o = begin; o < end; ++o) {
      const Dtype* po = prob + o * C;
      const int l = position_classes[o];
      if (l < 0) {
        WriteValues(dx + o * C, C, stream,
                    [](int) CT_LAMBDA_INLINE { return Dtype(0); });
        continue;
      }
      const Dtype p_scale = scale * sum_rows_H[l];
      const Dtype* h = H + l * C;
      WriteValues(dx + o * C, C, stream, [&](int c) CT_LAMBDA_INLINE {
        return p_scale * po[c] - scale * h[c];
      });
    }
    if (stream) StreamFence();
    return;
  }
  alignas(64) Dtype weight[kStrip], row_sum[kStrip], h[kChannelGroup][kStrip];
  alignas(64) int classes[kStrip];
  const HColumns<Dtype> columns(H, C);
  for (int t = begin; t < end; ++t) {
    int o, i0;
    StripOf(t, inner, kStrip, &o, &i0);
    const int w = std::min(kStrip, inner - i0);
    const int offset = o * C * inner + i0;
    StripClasses(position_classes + o * inner + i0, sum_rows_H, w, classes,
                 weight, row_sum);
#pragma omp simd
    for (int i = 0; i < w; ++i) row_sum[i] *= scale;
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      columns.Fill(c, group, classes, w, h);
      const int at = offset + c * inner;
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
          const Dtype v = p_scale * prob[at + k * inner + i] - scale * h[k][i];
          g[k] = valid ? v : Dtype(0);
        }
        for (int k = 0; k < group(); ++k) dx[at + k * inner + i] = g[k];
      }
    });
  }
}

// One class of the distillation forward: stores the unnormalised exps of the
// teacher's and the student's scaled, shifted logits, and adds to their sums
// and to the KL's cross term sum_c e^a_c (a_c - b_c).
template <typename Exp, typename Dtype>
CT_INLINE void DistillationClassTerms(Exp exp, Dtype beta, Dtype t,
                                      Dtype max_t, Dtype s, Dtype max_s,
                                      Dtype& p, Dtype& q, Dtype& sum_t,
                                      Dtype& sum_s, Dtype& cross) {
  const Dtype a = beta * (t - max_t), b = beta * (s - max_s);
  const Dtype ea = exp(a), eb = exp(b);
  p = ea;
  q = eb;
  sum_t += ea;
  sum_s += eb;
  cross += ea * (a - b);
}

template <typename Dtype>
CT_INLINE DistillationRow<Dtype> DistillationRowOf(Dtype max_t, Dtype max_s,
                                                   bool special, Dtype log_t,
                                                   Dtype log_s,
                                                   Dtype mean_cross) {
  return {mean_cross - log_t + log_s, Dtype(special), max_t, max_s, log_t,
          log_s};
}

// A row's exps, sums and cross term (inner = 1).
template <typename Exp, typename Dtype>
CT_INLINE void DistillationRowTerms(Exp exp, int C, Dtype beta,
                                    const Dtype* t, Dtype max_t,
                                    const Dtype* s, Dtype max_s, Dtype* p,
                                    Dtype* q, Dtype* sum_t, Dtype* sum_s,
                                    Dtype* cross) {
  Dtype st = 0, ss = 0, cr = 0;
#pragma omp simd reduction(+ : st, ss, cr)
  for (int c = 0; c < C; ++c) {
    DistillationClassTerms(exp, beta, t[c], max_t, s[c], max_s, p[c], q[c], st,
                           ss, cr);
  }
  *sum_t = st;
  *sum_s = ss;
  *cross = cr;
}

template <typename Dtype>
CT_INLINE void DistillationSoftmaxesImpl(const SoftmaxShape& s, int begin,
                                         int end, Dtype beta,
                                         const Dtype* student,
                                         const Dtype* teacher, Dtype* q,
                                         Dtype* p,
                                         DistillationRow<Dtype>* rows) {
  const int C = s.channels, inner = s.inner;
  if (inner == 1) {
    for (int o = begin; o < end; ++o) {
      const Dtype* so = student + o * C;
      const Dtype* to = teacher + o * C;
      Dtype* qo = q + o * C;
      Dtype* po = p + o * C;
      Dtype max_t = to[0], max_s = so[0], total = 0;
#pragma omp simd reduction(max : max_t, max_s) reduction(+ : total)
      for (int c = 0; c < C; ++c) {
        max_t = Larger(max_t, to[c]);
        max_s = Larger(max_s, so[c]);
        total += to[c] + so[c];
      }
      const bool special = IsSpecial(total);
      Dtype sum_t, sum_s, cross;
      if (special) {
        DistillationRowTerms(IeeeExp(), C, beta, to, max_t, so, max_s, po, qo,
                             &sum_t, &sum_s, &cross);
      } else {
        DistillationRowTerms(FastExp(), C, beta, to, max_t, so, max_s, po, qo,
                             &sum_t, &sum_s, &cross);
      }
      const Dtype inv_t = Dtype(1) / sum_t, inv_s = Dtype(1) / sum_s;
#pragma omp simd
      for (int c = 0; c < C; ++c) {
        po[c] *= inv_t;
        qo[c] *= inv_s;
      }
      rows[o] = DistillationRowOf(max_t, max_s, special, std::log(sum_t),
                                  std::log(sum_s), cross / sum_t);
    }
    return;
  }
  alignas(64) Dtype max_t[kStrip], max_s[kStrip], total[kStrip],
      sum_t[kStrip], sum_s[kStrip], cross[kStrip], log_t[kStrip],
      log_s[kStrip];
  for (int t = begin; t < end; ++t) {
    int o, i0;
    StripOf(t, inner, kStrip, &o, &i0);
    const int w = std::min(kStrip, inner - i0);
    const int offset = o * C * inner + i0;
    std::copy(teacher + offset, teacher + offset + w, max_t);
    std::copy(student + offset, student + offset + w, max_s);
    std::fill(total, total + w, Dtype(0));
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const int at = offset + c * inner;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype mt = max_t[i], ms = max_s[i], sum = total[i];
        for (int k = 0; k < group(); ++k) {
          const int j = at + k * inner + i;
          mt = Larger(mt, teacher[j]);
          ms = Larger(ms, student[j]);
          sum += teacher[j] + student[j];
        }
        max_t[i] = mt;
        max_s[i] = ms;
        total[i] = sum;
      }
    });
    std::fill(sum_t, sum_t + w, Dtype(0));
    std::fill(sum_s, sum_s + w, Dtype(0));
    std::fill(cross, cross + w, Dtype(0));
    // Groups of 2: with two exps per class, a group of 4 is more than GCC 12
    // unrolls inside the vectorised loop, which then stays scalar (4x
    // slower).
    ForChannelGroups<2>(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const int at = offset + c * inner;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype st = sum_t[i], ss = sum_s[i], cr = cross[i];
        // Every load of the group before its first store, as in StoreGroup.
        Dtype pk[group()], qk[group()];
        for (int k = 0; k < group(); ++k) {
          const int j = at + k * inner + i;
          DistillationClassTerms(FastExp(), beta, teacher[j], max_t[i],
                                 student[j], max_s[i], pk[k], qk[k], st, ss,
                                 cr);
        }
        for (int k = 0; k < group(); ++k) {
          p[at + k * inner + i] = pk[k];
          q[at + k * inner + i] = qk[k];
        }
        sum_t[i] = st;
        sum_s[i] = ss;
        cross[i] = cr;
      }
    });
    const bool any_special = AnySpecial(total, w);
    for (int i = 0; any_special && i < w; ++i) {
      if (!IsSpecial(total[i])) continue;
      // Redone with IEEE exps, channel by channel as above.
      sum_t[i] = sum_s[i] = cross[i] = 0;
      for (int c = 0; c < C; ++c) {
        const int j = offset + c * inner + i;
        DistillationClassTerms(IeeeExp(), beta, teacher[j], max_t[i],
                               student[j], max_s[i], p[j], q[j], sum_t[i],
                               sum_s[i], cross[i]);
      }
    }
    // The logs and divisions in a loop of their own, vectorised: in the
    // loop over the rows below, which is not, they took 0.5 of 3.8 ms at
    // 8 x 21 x 128 x 128.
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      log_t[i] = std::log(sum_t[i]);
      log_s[i] = std::log(sum_s[i]);
      cross[i] /= sum_t[i];
      sum_t[i] = Dtype(1) / sum_t[i];
      sum_s[i] = Dtype(1) / sum_s[i];
    }
    DistillationRow<Dtype>* strip_rows = rows + o * inner + i0;
    for (int i = 0; i < w; ++i) {
      strip_rows[i] = DistillationRowOf(max_t[i], max_s[i],
                                        IsSpecial(total[i]), log_t[i],
                                        log_s[i], cross[i]);
    }
    StripScale(p + offset, C, inner, w, sum_t);
    StripScale(q + offset, C, inner, w, sum_s);
  }
}

// One target_clones wrapper per entry point and type: the always-inline
// bodies above are compiled into each clone with that clone's vector ISA.
// Each runs the work items [begin, end); the OpenMP loops that split the items
// between threads stay outside the clones (in the entry points below).
#define CT_DEFINE_CLONES(Dtype)                                               \
  CT_CLONES void SoftmaxForwardClone(const SoftmaxShape& s, int begin,        \
                                     int end, const Dtype* x,                 \
                                     const BetaView<Dtype>& beta, Dtype* y) { \
    SoftmaxForwardImpl(s, begin, end, x, beta, y);                            \
  }                                                                           \
  CT_CLONES void SoftmaxBackwardClone(const SoftmaxShape& s, int begin,       \
                                      int end, const Dtype* y,                \
                                      const Dtype* dy,                        \
                                      const BetaView<Dtype>& beta,            \
                                      Dtype* dx) {                            \
    SoftmaxBackwardImpl(s, begin, end, y, dy, beta, dx);                      \
  }                                                                           \
  CT_CLONES void SoftmaxBetaGradientClone(const SoftmaxShape& s, int begin,   \
                                          int end, const Dtype* x,            \
                                          const Dtype* y, const Dtype* dy,    \
                                          Dtype* g) {                         \
    SoftmaxBetaGradientImpl(s, begin, end, x, y, dy, g);                      \
  }                                                                           \
  CT_CLONES void InfogainLossForwardClone(const SoftmaxShape& s, int begin,   \
                                          int end, const Dtype* x,            \
                                          const int* classes, const Dtype* H, \
                                          const Dtype* sum_rows_H,            \
                                          Dtype* prob, Dtype* item_loss,      \
                                          Dtype* extremes) {                  \
    InfogainLossForwardImpl(s, begin, end, x, classes, H, sum_rows_H, prob,   \
                            item_loss, extremes);                             \
  }                                                                           \
  CT_CLONES void InfogainLossBackwardClone(const SoftmaxShape& s, int begin,  \
                                           int end, const Dtype* prob,        \
                                           const int* classes,                \
                                           const Dtype* H,                    \
                                           const Dtype* sum_rows_H,           \
                                           Dtype scale, Dtype* dx) {          \
    InfogainLossBackwardImpl(s, begin, end, prob, classes, H, sum_rows_H,     \
                             scale, dx);                                      \
  }                                                                           \
  CT_CLONES void DistillationSoftmaxesClone(                                  \
      const SoftmaxShape& s, int begin, int end, Dtype beta,                  \
      const Dtype* student, const Dtype* teacher, Dtype* q, Dtype* p,         \
      DistillationRow<Dtype>* rows) {                                         \
    DistillationSoftmaxesImpl(s, begin, end, beta, student, teacher, q, p,    \
                              rows);                                          \
  }

CT_DEFINE_CLONES(float)
CT_DEFINE_CLONES(double)

}  // namespace

template <typename Dtype>
void SoftmaxForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                       const BetaView<Dtype>& beta, Dtype* y) {
  ParallelRanges(ForwardItems(shape), shape.count(),
                 [&](int begin, int end) {
                   SoftmaxForwardClone(shape, begin, end, x, beta, y);
                 });
}

template <typename Dtype>
void SoftmaxBackwardCPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx) {
  ParallelRanges(StripItems(shape.outer, shape.inner, kStrip), shape.count(),
                 [&](int begin, int end) {
                   SoftmaxBackwardClone(shape, begin, end, y, dy, beta, dx);
                 });
}

template <typename Dtype>
void SoftmaxBetaGradientCPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* y, const Dtype* dy,
                            Dtype* position_grad) {
  ParallelRanges(StripItems(shape.outer, shape.inner, kStrip), shape.count(),
                 [&](int begin, int end) {
                   SoftmaxBetaGradientClone(shape, begin, end, x, y, dy,
                                            position_grad);
                 });
}

template <typename Dtype>
Dtype InfogainLossForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                             const int* position_classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype* prob,
                             bool* plus_inf, bool* minus_inf) {
  const int items = ForwardItems(shape);
  std::vector<Dtype> item_loss(items);
  Dtype most = 0, least = 0;
  ParallelRanges(items, shape.count(), [&](int begin, int end) {
    Dtype extremes[2] = {0, 0};
    InfogainLossForwardClone(shape, begin, end, x, position_classes, H,
                             sum_rows_H, prob, item_loss.data(), extremes);
    // Exact whatever the order in which the threads arrive.
#pragma omp critical(caffe_temperature_infogain_extremes)
    {
      most = std::max(most, extremes[0]);
      least = std::min(least, extremes[1]);
    }
  });
  *plus_inf = most > 0;
  *minus_inf = least < 0;
  // In item order, on one thread: the same sum for any thread count.
  Dtype loss = 0;
  for (int t = 0; t < items; ++t) loss += item_loss[t];
  return loss;
}

template <typename Dtype>
void InfogainLossBackwardCPU(const SoftmaxShape& shape, const Dtype* prob,
                             const int* position_classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype scale, Dtype* dx) {
  ParallelRanges(StripItems(shape.outer, shape.inner, kStrip),
                 shape.count(), [&](int begin, int end) {
                   InfogainLossBackwardClone(shape, begin, end, prob,
                                             position_classes, H, sum_rows_H,
                                             scale, dx);
                 });
}

template <typename Dtype>
void DistillationSoftmaxesCPU(const SoftmaxShape& shape, Dtype beta,
                              const Dtype* student, const Dtype* teacher,
                              Dtype* q, Dtype* p,
                              DistillationRow<Dtype>* rows) {
  ParallelRanges(StripItems(shape.outer, shape.inner, kStrip),
                 shape.count(), [&](int begin, int end) {
                   DistillationSoftmaxesClone(shape, begin, end, beta, student,
                                              teacher, q, p, rows);
                 });
}

#define CT_INSTANTIATE_KERNELS(Dtype)                                         \
  template void SoftmaxForwardCPU<Dtype>(const SoftmaxShape&, const Dtype*,   \
                                         const BetaView<Dtype>&, Dtype*);     \
  template void SoftmaxBackwardCPU<Dtype>(const SoftmaxShape&, const Dtype*,  \
                                          const Dtype*,                       \
                                          const BetaView<Dtype>&, Dtype*);    \
  template void SoftmaxBetaGradientCPU<Dtype>(const SoftmaxShape&,            \
                                              const Dtype*, const Dtype*,     \
                                              const Dtype*, Dtype*);          \
  template Dtype InfogainLossForwardCPU<Dtype>(const SoftmaxShape&,           \
                                               const Dtype*, const int*,      \
                                               const Dtype*, const Dtype*,    \
                                               Dtype*, bool*, bool*);         \
  template void InfogainLossBackwardCPU<Dtype>(const SoftmaxShape&,           \
                                               const Dtype*, const int*,      \
                                               const Dtype*, const Dtype*,    \
                                               Dtype, Dtype*); \
  template void DistillationSoftmaxesCPU<Dtype>(                              \
      const SoftmaxShape&, Dtype, const Dtype*, const Dtype*, Dtype*, Dtype*, \
      DistillationRow<Dtype>*);

CT_INSTANTIATE_KERNELS(float)
CT_INSTANTIATE_KERNELS(double)

}  // namespace caffe_temperature
