// SoftmaxWithDistillationLoss's fast-math CPU kernels: the two softmaxes of
// the forward, with the KL of every position whose logits are finite, and
// the student gradient. Built with -ffast-math -fopenmp-simd, as
// softmax_kernels.cpp is; the KL of the other positions is finished in IEEE
// arithmetic by ieee_finishing.cpp.
#include <algorithm>
#include <cmath>

#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/streaming.hpp"
#include "caffe_temperature/vector_math.hpp"
#include "distillation_rows.hpp"
#include "kernel_instantiations.hpp"
#include "kernel_layout.hpp"
#include "softmax_sums.hpp"

namespace caffe_temperature {

namespace {

// One class of the forward: stores the unnormalised exps of the teacher's
// and the student's scaled, shifted logits, and adds to their sums and to
// the KL's cross term sum_c e^a_c (a_c - b_c).
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
struct DistillationSoftmaxes : LayoutKernel {
  DistillationSoftmaxes(const SoftmaxShape& shape, Dtype beta,
                        const Dtype* student, const Dtype* teacher, Dtype* q,
                        Dtype* p, Dtype* kl,
                        const DistillationRows<Dtype>& rows)
      : C(shape.channels), beta(beta), student(student), teacher(teacher),
        q(q), p(p), kl(kl), rows(rows) {}

  // Position pos's kl and rows, from mean_cross = sum_c p_c (a_c - b_c).
  CT_INLINE void SetRow(int pos, Dtype max_t, Dtype max_s, bool special,
                        Dtype log_t, Dtype log_s, Dtype mean_cross) const {
    kl[pos] = mean_cross - log_t + log_s;
    rows.special[pos] = Dtype(special);
    rows.max_teacher[pos] = max_t;
    rows.max_student[pos] = max_s;
    rows.log_sum_teacher[pos] = log_t;
    rows.log_sum_student[pos] = log_s;
  }

  CT_INLINE void RowBody(int o) const {
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
    SetRow(o, max_t, max_s, special, std::log(sum_t), std::log(sum_s),
           cross / sum_t);
  }

  CT_INLINE void StripBody(const Strip& s) const {
    alignas(64) Dtype max_t[kStrip], max_s[kStrip], total[kStrip],
        sum_t[kStrip], sum_s[kStrip], cross[kStrip], log_t[kStrip],
        log_s[kStrip];
    const int w = s.w, stride = s.stride, offset = s.offset;
    std::copy(teacher + offset, teacher + offset + w, max_t);
    std::copy(student + offset, student + offset + w, max_s);
    std::fill(total, total + w, Dtype(0));
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const int at = offset + c * stride;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype mt = max_t[i], ms = max_s[i], sum = total[i];
        for (int k = 0; k < group(); ++k) {
          const int j = at + k * stride + i;
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
      const int at = offset + c * stride;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        Dtype st = sum_t[i], ss = sum_s[i], cr = cross[i];
        // Every load of the group before its first store, as in StoreGroup.
        Dtype pk[group()], qk[group()];
        for (int k = 0; k < group(); ++k) {
          const int j = at + k * stride + i;
          DistillationClassTerms(FastExp(), beta, teacher[j], max_t[i],
                                 student[j], max_s[i], pk[k], qk[k], st, ss,
                                 cr);
        }
        for (int k = 0; k < group(); ++k) {
          p[at + k * stride + i] = pk[k];
          q[at + k * stride + i] = qk[k];
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
        const int j = offset + c * stride + i;
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
    for (int i = 0; i < w; ++i) {
      SetRow(s.position + i, max_t[i], max_s[i], IsSpecial(total[i]),
             log_t[i], log_s[i], cross[i]);
    }
    StripScale(p + offset, C, stride, w, sum_t);
    StripScale(q + offset, C, stride, w, sum_s);
  }

  int C;
  Dtype beta;
  const Dtype *student, *teacher;
  Dtype *q, *p, *kl;
  DistillationRows<Dtype> rows;
};

// dx = scale * valid(position) * (q - p).
template <typename Dtype>
struct DistillationBackward : LayoutKernel {
  DistillationBackward(const SoftmaxShape& shape, Dtype scale, const Dtype* q,
                       const Dtype* p, const Dtype* valid, Dtype* dx)
      : C(shape.channels), scale(scale), q(q), p(p), valid(valid), dx(dx) {
    stream = StreamsOutput(shape.count(), sizeof(Dtype));
  }

  CT_INLINE void RowBody(int o) const {
    // Locals, not members, in the loop, as in InfogainBackward's.
    const Dtype* qo = q + o * C;
    const Dtype* po = p + o * C;
    const Dtype row_scale = scale * valid[o];
    WriteValues(dx + o * C, C, stream, [&](int c) CT_LAMBDA_INLINE {
      return row_scale * (qo[c] - po[c]);
    });
  }

  CT_INLINE void StripBody(const Strip& s) const {
    alignas(64) Dtype position_scale[kStrip];
    const int w = s.w, stride = s.stride;
    for (int i = 0; i < w; ++i) {
      position_scale[i] = scale * valid[s.position + i];
    }
    ForChannelGroups(C, [&](int c, auto group) CT_LAMBDA_INLINE {
      const int at = s.offset + c * stride;
#pragma omp simd
      for (int i = 0; i < w; ++i) {
        const Dtype f = position_scale[i];
        StoreGroup(group, dx + at + i, stride, [&](int k) CT_LAMBDA_INLINE {
          const int j = at + k * stride + i;
          return f * (q[j] - p[j]);
        });
      }
    });
  }

  int C;
  Dtype scale;
  const Dtype *q, *p, *valid;
  Dtype* dx;
};

CT_LAYOUT_CLONES(DistillationSoftmaxes)
CT_LAYOUT_CLONES(DistillationBackward)

}  // namespace

template <typename Dtype>
void DistillationSoftmaxesCPU(const SoftmaxShape& shape, Dtype beta,
                              const Dtype* student, const Dtype* teacher,
                              Dtype* q, Dtype* p, Dtype* kl,
                              const DistillationRows<Dtype>& rows) {
  RunLayout(shape, DistillationSoftmaxes<Dtype>(shape, beta, student, teacher,
                                                q, p, kl, rows));
}

template <typename Dtype>
void DistillationBackwardCPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx) {
  RunLayout(shape,
            DistillationBackward<Dtype>(shape, scale, q, p, valid, dx));
}

#define CT_INSTANTIATE_DISTILLATION_SOFTMAXES(Dtype)                         \
  template void DistillationSoftmaxesCPU<Dtype>(                             \
      const SoftmaxShape&, Dtype, const Dtype*, const Dtype*, Dtype*, Dtype*, \
      Dtype*, const DistillationRows<Dtype>&);

CT_INSTANTIATE_DISTILLATION_SOFTMAXES(float)
CT_INSTANTIATE_DISTILLATION_SOFTMAXES(double)
CT_INSTANTIATE_DISTILLATION_BACKWARD(float)
CT_INSTANTIATE_DISTILLATION_BACKWARD(double)

}  // namespace caffe_temperature
