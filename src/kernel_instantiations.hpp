#ifndef CAFFE_TEMPERATURE_SRC_KERNEL_INSTANTIATIONS_HPP_
#define CAFFE_TEMPERATURE_SRC_KERNEL_INSTANTIATIONS_HPP_

// The explicit instantiations of the CPU kernels of softmax_kernels.hpp, for
// the files that define them: the fast ones in namespace caffe_temperature,
// the plain ones in caffe_temperature::reference (internal to src/).
#include <vector>

#include "caffe_temperature/softmax_kernels.hpp"

#define CT_INSTANTIATE_SOFTMAX_KERNELS(Dtype)                                \
  template void SoftmaxForwardCPU<Dtype>(const SoftmaxShape&, const Dtype*,  \
                                         const BetaView<Dtype>&, Dtype*);    \
  template void SoftmaxBackwardCPU<Dtype>(const SoftmaxShape&, const Dtype*, \
                                          const Dtype*,                      \
                                          const BetaView<Dtype>&, Dtype*);   \
  template void SoftmaxBetaGradientCPU<Dtype>(const SoftmaxShape&,           \
                                              const Dtype*, const Dtype*,    \
                                              const Dtype*, Dtype*);

#define CT_INSTANTIATE_INFOGAIN_KERNELS(Dtype)                               \
  template Dtype InfogainLossForwardCPU<Dtype>(const SoftmaxShape&,          \
                                               const Dtype*, const int*,     \
                                               const Dtype*, const Dtype*,   \
                                               Dtype*, bool*, bool*);        \
  template void InfogainLossBackwardCPU<Dtype>(const SoftmaxShape&,          \
                                               const Dtype*, const int*,     \
                                               const Dtype*, const Dtype*,   \
                                               Dtype, Dtype*);

#define CT_INSTANTIATE_DISTILLATION_FORWARD(Dtype)                           \
  template void DistillationForwardCPU<Dtype>(                               \
      const SoftmaxShape&, Dtype, const Dtype*, const Dtype*, const Dtype*,  \
      Dtype*, Dtype*, Dtype*, std::vector<Dtype>*);

#define CT_INSTANTIATE_DISTILLATION_BACKWARD(Dtype)                          \
  template void DistillationBackwardCPU<Dtype>(const SoftmaxShape&, Dtype,   \
                                               const Dtype*, const Dtype*,   \
                                               const Dtype*, Dtype*);

#endif  // CAFFE_TEMPERATURE_SRC_KERNEL_INSTANTIATIONS_HPP_
