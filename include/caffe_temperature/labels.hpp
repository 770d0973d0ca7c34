#ifndef CAFFE_TEMPERATURE_LABELS_HPP_
#define CAFFE_TEMPERATURE_LABELS_HPP_

// Label validation shared by the CPU layers and the GPU kernels, so that both
// accept exactly the same labels. Free of Caffe headers: tests/emulated
// builds the GPU kernels without Caffe.

#ifdef __CUDACC__
#define CT_HOST_DEVICE __host__ __device__
#else
#define CT_HOST_DEVICE
#endif

namespace caffe_temperature {

enum LabelKind { kLabelValid, kLabelIgnored, kLabelInvalid };

// loss_param's ignore_label, as the kernels see it.
struct IgnoreLabel {
  bool enabled;
  int value;
};

// A label is an integer in [0, channels), or ignore_label. The comparisons
// are written so that NaN and infinities come out invalid before any cast.
template <typename Dtype>
CT_HOST_DEVICE inline LabelKind ClassifyLabel(Dtype value, int channels,
                                              const IgnoreLabel& ignore) {
  if (ignore.enabled && value == static_cast<Dtype>(ignore.value)) {
    return kLabelIgnored;
  }
  if (!(value >= 0 && value < channels)) return kLabelInvalid;
  return value == static_cast<Dtype>(static_cast<int>(value)) ? kLabelValid
                                                               : kLabelInvalid;
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_LABELS_HPP_
