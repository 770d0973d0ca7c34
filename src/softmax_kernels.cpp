// TemperatureSoftmax's CPU kernels: the forward, the backward and the
// gradient to beta. Built with -ffast-math -fopenmp-simd (CMakeLists.txt):
// `#pragma omp simd` loops then inline the float exp of vector_math.hpp, or
// call glibc's vector exp (libmvec) for doubles and IEEE cases. Each kernel
// supplies its row and strip bodies to kernel_layout.hpp, which compiles
// them for each instruction set and splits the work between threads;
// reference_kernels.cpp holds the plain versions.
#include "caffe_temperature/softmax_kernels.hpp"

#include <algorithm>

#include "caffe_temperature/streaming.hpp"
#include "caffe_temperature/vector_math.hpp"
#include "kernel_instantiations.hpp"
#include "kernel_layout.hpp"
#include "softmax_sums.hpp"

namespace caffe_temperature {

namespace {

template <typename Dtype>
CT_INLINE Dtype BetaAt(const BetaView<Dtype>& beta, int o, int i) {
  return beta.data[o * beta.outer_stride + i * beta.inner_stride];
}

// Calls run(betas) with the betas of the positions of strip s: one value
// where beta does not vary along them (a constant, or one per outer index
// along a strip), else an array of them in b.
template <typename Dtype, typename Run>
CT_INLINE void WithStripBetas(const BetaView<Dtype>& beta, const Strip& s,
                              Dtype* b, const Run& run) {
  const int step = s.along_outer ? beta.outer_stride : beta.inner_stride;
  const Dtype* first = beta.data + s.o * beta.outer_stride +
                       s.i0 * beta.inner_stride;
  if (step == 0) {
    run(SameBeta<Dtype>{*first});
    return;
  }
  for (int i = 0; i < s.w; ++i) b[i] = first[i * step];
  run(static_cast<const Dtype*>(b));
}

// y = softmax(beta * x).
template <typename Dtype>
struct SoftmaxForward : LayoutKernel {
  static const bool kShortRowTiles = true;
  static const bool kExpsMayAliasInput = true;
  SoftmaxForward(const SoftmaxShape& shape, const Dtype* x,
                 const BetaView<Dtype>& beta, Dtype* y)
      : C(shape.channels), x(x), beta(beta), y(y) {}

  CT_INLINE void RowBody(int o) const {
    const Dtype* xo = x + o * C;
    Dtype* yo = y + o * C;
    Dtype m;
    const Dtype inv =
        Dtype(1) / RowSoftmaxSum(xo, C, BetaAt(beta, o, 0), yo, &m);
#pragma omp simd
    for (int c = 0; c < C; ++c) yo[c] *= inv;
  }

  CT_INLINE void StripBody(const Strip& s, const Dtype* xs, Dtype* es,
                       Dtype* scale) const {
    alignas(64) Dtype m[kStrip], b[kStrip], total[kStrip];
    WithStripBetas(beta, s, b, [&](const auto& betas) CT_LAMBDA_INLINE {
      StripSoftmaxSums(xs, C, s.stride, s.w, betas, m, total, es, scale,
                       NoChannelTerms<Dtype>());
    });
    for (int i = 0; i < s.w; ++i) scale[i] = Dtype(1) / scale[i];
  }

  int C;
  const Dtype* x;
  BetaView<Dtype> beta;
  Dtype* y;
};

// dx = beta * y * (dy - sum_k dy_k y_k).
template <typename Dtype>
struct SoftmaxBackward : LayoutKernel {
  SoftmaxBackward(const SoftmaxShape& shape, const Dtype* y, const Dtype* dy,
                  const BetaView<Dtype>& beta, Dtype* dx)
      : C(shape.channels), y(y), dy(dy), beta(beta), dx(dx) {
    stream = StreamsOutput(shape.count(), sizeof(Dtype));
  }

  CT_INLINE void RowBody(int o) const {
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

  CT_INLINE void StripBody(const Strip& s) const {
    alignas(64) Dtype b[kStrip], dot[kStrip];
    const int w = s.w, stride = s.stride;
    std::fill(dot, dot + w, Dtype(0));
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const Dtype* yc = y + s.offset + c * stride;
      const Dtype* dyc = dy + s.offset + c * stride;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype d = dot[i];
        for (int k = 0; k < group(); ++k) {
          d += dyc[k * stride + i] * yc[k * stride + i];
        }
        dot[i] = d;
      }
    });
    WithStripBetas(beta, s, b, [&](const auto& betas) CT_LAMBDA_INLINE {
      ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
        const int at = s.offset + c * stride;
#pragma omp simd
        for (int i = 0; i < w; ++i) {
          const Dtype bi = betas[i], di = dot[i];
          StoreGroup(group, dx + at + i, stride, [&](int k) CT_LAMBDA_INLINE {
            const int j = at + k * stride + i;
            return bi * y[j] * (dy[j] - di);
          });
        }
      });
    });
  }

  int C;
  const Dtype *y, *dy;
  BetaView<Dtype> beta;
  Dtype* dx;
};

// g[position] = sum_c dy_c y_c (x_c - sum_k y_k x_k). With d = x - m, that
// is sum_c dy_c y_c d_c - (sum_c dy_c y_c) E_y[d] for any shift m. Shifting
// by the max keeps the two terms from cancelling at the size of |x| (large
// logits, or one y_c close to 1).
template <typename Dtype>
struct SoftmaxBetaGradient : LayoutKernel {
  SoftmaxBetaGradient(const SoftmaxShape& shape, const Dtype* x,
                      const Dtype* y, const Dtype* dy, Dtype* g)
      : C(shape.channels), x(x), y(y), dy(dy), g(g) {}

  CT_INLINE void RowBody(int o) const {
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

  CT_INLINE void StripBody(const Strip& s) const {
    alignas(64) Dtype m[kStrip], mean[kStrip], dot[kStrip], dot_d[kStrip];
    const int w = s.w, stride = s.stride;
    std::copy(x + s.offset, x + s.offset + w, m);
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const Dtype* xc = x + s.offset + c * stride;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype max = m[i];
        for (int k = 0; k < group(); ++k) {
          max = Larger(max, xc[k * stride + i]);
        }
        m[i] = max;
      }
    });
    std::fill(mean, mean + w, Dtype(0));
    std::fill(dot, dot + w, Dtype(0));
    std::fill(dot_d, dot_d + w, Dtype(0));
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const int at = s.offset + c * stride;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype mean_i = mean[i], dot_i = dot[i], dot_d_i = dot_d[i];
        for (int k = 0; k < group(); ++k) {
          const int j = at + k * stride + i;
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
    Dtype* gs = g + s.position;
#pragma omp simd
    for (int i = 0; i < w; ++i) gs[i] = dot_d[i] - dot[i] * mean[i];
  }

  int C;
  const Dtype *x, *y, *dy;
  Dtype* g;
};

CT_LAYOUT_CLONES(SoftmaxForward)
CT_LAYOUT_CLONES(SoftmaxBackward)
CT_LAYOUT_CLONES(SoftmaxBetaGradient)

}  // namespace

template <typename Dtype>
void SoftmaxForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                       const BetaView<Dtype>& beta, Dtype* y) {
  RunLayout(shape, SoftmaxForward<Dtype>(shape, x, beta, y));
}

template <typename Dtype>
void SoftmaxBackwardCPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx) {
  RunLayout(shape, SoftmaxBackward<Dtype>(shape, y, dy, beta, dx));
}

template <typename Dtype>
void SoftmaxBetaGradientCPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* y, const Dtype* dy,
                            Dtype* position_grad) {
  RunLayout(shape, SoftmaxBetaGradient<Dtype>(shape, x, y, dy, position_grad));
}

CT_INSTANTIATE_SOFTMAX_KERNELS(float)
CT_INSTANTIATE_SOFTMAX_KERNELS(double)

}  // namespace caffe_temperature
