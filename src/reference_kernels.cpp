// The plain kernels of reference_kernels.hpp. Built without fast-math and
// without vector pragmas: each is the formula of docs/spec.md over one
// position's vector at a time, with log-probabilities as x - max - log S so
// that an underflowed probability keeps a finite log. Infinities and NaNs
// follow from IEEE arithmetic, which is the NaN policy of docs/robustness.md.
#include "caffe_temperature/reference_kernels.hpp"

#include <cmath>
#include <vector>

#include "kernel_instantiations.hpp"

namespace caffe_temperature {
namespace reference {

namespace {

// The `channels` values of position pos: element c at data[At(c)].
class Vector {
 public:
  Vector(const SoftmaxShape& shape, int pos)
      : first_(pos / shape.inner * shape.channels * shape.inner +
               pos % shape.inner),
        stride_(shape.inner) {}
  int At(int c) const { return first_ + c * stride_; }

 private:
  int first_, stride_;
};

// The largest of the vector's values: the shift that keeps exp from
// overflowing.
template <typename Dtype>
Dtype MaxOf(const SoftmaxShape& shape, const Vector& v, const Dtype* x) {
  Dtype m = x[v.At(0)];
  for (int c = 1; c < shape.channels; ++c) {
    if (x[v.At(c)] > m) m = x[v.At(c)];
  }
  return m;
}

template <typename Dtype>
Dtype BetaOf(const BetaView<Dtype>& beta, const SoftmaxShape& shape,
             int pos) {
  return beta.data[pos / shape.inner * beta.outer_stride +
                   pos % shape.inner * beta.inner_stride];
}

// log softmax(beta * x) of position pos, in Dtype.
template <typename Dtype>
std::vector<Dtype> LogSoftmax(const SoftmaxShape& shape, int pos,
                              const Dtype* x, Dtype beta) {
  const Vector v(shape, pos);
  const Dtype m = MaxOf(shape, v, x);
  Dtype sum = 0;
  for (int c = 0; c < shape.channels; ++c) {
    sum += std::exp(beta * (x[v.At(c)] - m));
  }
  std::vector<Dtype> log_p(shape.channels);
  for (int c = 0; c < shape.channels; ++c) {
    log_p[c] = beta * (x[v.At(c)] - m) - std::log(sum);
  }
  return log_p;
}

}  // namespace

template <typename Dtype>
void SoftmaxForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                       const BetaView<Dtype>& beta, Dtype* y) {
  for (int pos = 0; pos < shape.positions(); ++pos) {
    const Vector v(shape, pos);
    // The whole vector before any of it is written: y may alias x.
    const std::vector<Dtype> log_p =
        LogSoftmax(shape, pos, x, BetaOf(beta, shape, pos));
    for (int c = 0; c < shape.channels; ++c) y[v.At(c)] = std::exp(log_p[c]);
  }
}

template <typename Dtype>
void SoftmaxBackwardCPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx) {
  for (int pos = 0; pos < shape.positions(); ++pos) {
    const Vector v(shape, pos);
    Dtype dot = 0;
    for (int c = 0; c < shape.channels; ++c) dot += dy[v.At(c)] * y[v.At(c)];
    const Dtype b = BetaOf(beta, shape, pos);
    for (int c = 0; c < shape.channels; ++c) {
      dx[v.At(c)] = b * y[v.At(c)] * (dy[v.At(c)] - dot);
    }
  }
}

template <typename Dtype>
void SoftmaxBetaGradientCPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* y, const Dtype* dy,
                            Dtype* position_grad) {
  for (int pos = 0; pos < shape.positions(); ++pos) {
    const Vector v(shape, pos);
    // x shifted by its max: the gradient does not change (the y_c sum to 1),
    // and large logits do not cancel.
    const Dtype m = MaxOf(shape, v, x);
    Dtype mean = 0;
    for (int c = 0; c < shape.channels; ++c) {
      mean += y[v.At(c)] * (x[v.At(c)] - m);
    }
    Dtype g = 0;
    for (int c = 0; c < shape.channels; ++c) {
      g += dy[v.At(c)] * y[v.At(c)] * (x[v.At(c)] - m - mean);
    }
    position_grad[pos] = g;
  }
}

template <typename Dtype>
Dtype InfogainLossForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                             const int* classes, const Dtype* H,
                             const Dtype* /*sum_rows_H*/, Dtype* prob,
                             bool* plus_inf, bool* minus_inf) {
  *plus_inf = *minus_inf = false;
  Dtype loss = 0;
  for (int pos = 0; pos < shape.positions(); ++pos) {
    const Vector v(shape, pos);
    const std::vector<Dtype> log_p = LogSoftmax(shape, pos, x, Dtype(1));
    for (int c = 0; c < shape.channels; ++c) {
      prob[v.At(c)] = std::exp(log_p[c]);
    }
    const int l = classes[pos];
    if (l < 0) continue;
    for (int c = 0; c < shape.channels; ++c) {
      const Dtype h = H[l * shape.channels + c];
      // 0 log 0 = 0; an infinite term is reported, not added.
      if (h == 0) continue;
      const Dtype term = -h * log_p[c];
      if (term == INFINITY) {
        *plus_inf = true;
      } else if (term == -INFINITY) {
        *minus_inf = true;
      } else {
        loss += term;
      }
    }
  }
  return loss;
}

template <typename Dtype>
void InfogainLossBackwardCPU(const SoftmaxShape& shape, const Dtype* prob,
                             const int* classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype scale,
                             Dtype* dx) {
  for (int pos = 0; pos < shape.positions(); ++pos) {
    const Vector v(shape, pos);
    const int l = classes[pos];
    for (int c = 0; c < shape.channels; ++c) {
      dx[v.At(c)] = l < 0 ? Dtype(0)
                          : scale * (prob[v.At(c)] * sum_rows_H[l] -
                                     H[l * shape.channels + c]);
    }
  }
}

template <typename Dtype>
void DistillationForwardCPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* valid, Dtype* q, Dtype* p, Dtype* kl,
                            std::vector<Dtype>* /*scratch*/) {
  for (int pos = 0; pos < shape.positions(); ++pos) {
    const Vector v(shape, pos);
    const std::vector<Dtype> log_q = LogSoftmax(shape, pos, student, beta);
    const std::vector<Dtype> log_p = LogSoftmax(shape, pos, teacher, beta);
    Dtype sum = 0;
    for (int c = 0; c < shape.channels; ++c) {
      q[v.At(c)] = std::exp(log_q[c]);
      p[v.At(c)] = std::exp(log_p[c]);
      // 0 log 0 = 0, but a NaN p is no 0.
      if (p[v.At(c)] != 0) sum += p[v.At(c)] * (log_p[c] - log_q[c]);
    }
    kl[pos] = valid[pos] != 0 ? sum : Dtype(0);
  }
}

template <typename Dtype>
void DistillationBackwardCPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx) {
  for (int pos = 0; pos < shape.positions(); ++pos) {
    const Vector v(shape, pos);
    for (int c = 0; c < shape.channels; ++c) {
      dx[v.At(c)] = scale * valid[pos] * (q[v.At(c)] - p[v.At(c)]);
    }
  }
}

#define CT_INSTANTIATE_REFERENCE_KERNELS(Dtype)    \
  CT_INSTANTIATE_SOFTMAX_KERNELS(Dtype)      \
  CT_INSTANTIATE_INFOGAIN_KERNELS(Dtype)     \
  CT_INSTANTIATE_DISTILLATION_FORWARD(Dtype) \
  CT_INSTANTIATE_DISTILLATION_BACKWARD(Dtype)

CT_INSTANTIATE_REFERENCE_KERNELS(float)
CT_INSTANTIATE_REFERENCE_KERNELS(double)

}  // namespace reference
}  // namespace caffe_temperature
