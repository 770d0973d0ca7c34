#ifndef CAFFE_TEMPERATURE_REFERENCE_KERNELS_HPP_
#define CAFFE_TEMPERATURE_REFERENCE_KERNELS_HPP_

// Plain versions of the CPU kernels of softmax_kernels.hpp: the same
// functions, with the same contracts, written as the formulas of
// docs/spec.md read, one position at a time in scalar IEEE arithmetic, on
// one thread. The C++ tests compare the layers with them (in double), and a
// build with -DCAFFE_TEMPERATURE_REFERENCE_KERNELS=ON runs the layers on
// them, to tell a bug of the fast kernels from one elsewhere.
#include <vector>

#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe_temperature {
namespace reference {

template <typename Dtype>
void SoftmaxForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                       const BetaView<Dtype>& beta, Dtype* y);

template <typename Dtype>
void SoftmaxBackwardCPU(const SoftmaxShape& shape, const Dtype* y,
                        const Dtype* dy, const BetaView<Dtype>& beta,
                        Dtype* dx);

template <typename Dtype>
void SoftmaxBetaGradientCPU(const SoftmaxShape& shape, const Dtype* x,
                            const Dtype* y, const Dtype* dy,
                            Dtype* position_grad);

template <typename Dtype>
Dtype InfogainLossForwardCPU(const SoftmaxShape& shape, const Dtype* x,
                             const int* classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype* prob,
                             bool* plus_inf, bool* minus_inf);

template <typename Dtype>
void InfogainLossBackwardCPU(const SoftmaxShape& shape, const Dtype* prob,
                             const int* classes, const Dtype* H,
                             const Dtype* sum_rows_H, Dtype scale, Dtype* dx);

// scratch: unused (the fast kernel's interface).
template <typename Dtype>
void DistillationForwardCPU(const SoftmaxShape& shape, Dtype beta,
                            const Dtype* student, const Dtype* teacher,
                            const Dtype* valid, Dtype* q, Dtype* p, Dtype* kl,
                            std::vector<Dtype>* scratch);

template <typename Dtype>
void DistillationBackwardCPU(const SoftmaxShape& shape, Dtype scale,
                             const Dtype* q, const Dtype* p,
                             const Dtype* valid, Dtype* dx);

}  // namespace reference
}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_REFERENCE_KERNELS_HPP_
