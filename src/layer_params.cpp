#include <algorithm>
#include <cmath>
#include <string>

#include "caffe/common.hpp"
#include "caffe_temperature/layer_params.hpp"

namespace caffe_temperature {

namespace {

std::string SyntaxHint() {
  return "give the inverse temperature beta = 1/T as a constant filler, e.g. "
         "for T = 40: scale_param { filler { type: \"constant\" "
         "value: 0.025 } }";
}

}  // namespace

double ReadInverseTemperature(const caffe::LayerParameter& param) {
  if (!param.has_scale_param() || !param.scale_param().has_filler()) {
    return 1.0;
  }
  const caffe::FillerParameter& filler = param.scale_param().filler();
  CHECK_EQ(filler.type(), "constant")
      << param.type() << " layer '" << param.name() << "': scale_param.filler "
      << "has type \"" << filler.type() << "\", but the temperature must be "
      << "a constant; " << SyntaxHint();
  const double beta = filler.value();
  CHECK(std::isfinite(beta) && beta > 0)
      << param.type() << " layer '" << param.name() << "': inverse "
      << "temperature beta = " << beta << " must be finite and > 0; "
      << SyntaxHint();
  return beta;
}

template <typename Dtype>
void CheckInverseTemperatures(const caffe::LayerParameter& param,
                              const Dtype* beta, int n) {
  for (int i = 0; i < n; ++i) {
    CHECK(std::isfinite(beta[i]) && beta[i] > 0)
        << param.type() << " layer '" << param.name() << "': inverse "
        << "temperature bottom[1][" << i << "] = " << beta[i]
        << " must be finite and > 0 (beta = 1/T)";
  }
}

template void CheckInverseTemperatures<float>(const caffe::LayerParameter&,
                                              const float*, int);
template void CheckInverseTemperatures<double>(const caffe::LayerParameter&,
                                               const double*, int);

int InfogainSoftmaxAxis(const caffe::LayerParameter& param) {
#if CAFFE_TEMPERATURE_INFOGAIN_HAS_AXIS
  return param.infogain_loss_param().axis();
#else
  return param.softmax_param().axis();
#endif
}

caffe::LossParameter_NormalizationMode NormalizationMode(
    const caffe::LayerParameter& param) {
  const caffe::LossParameter& loss = param.loss_param();
  if (!loss.has_normalization() && loss.has_normalize()) {
    return loss.normalize() ? caffe::LossParameter_NormalizationMode_VALID
                            : caffe::LossParameter_NormalizationMode_BATCH_SIZE;
  }
  return loss.normalization();
}

double LossNormalizer(caffe::LossParameter_NormalizationMode mode, int outer,
                      int inner, int valid_count) {
  double normalizer = 1;
  switch (mode) {
    case caffe::LossParameter_NormalizationMode_FULL:
      normalizer = static_cast<double>(outer) * inner;
      break;
    case caffe::LossParameter_NormalizationMode_VALID:
      normalizer = valid_count < 0 ? static_cast<double>(outer) * inner
                                   : valid_count;
      break;
    case caffe::LossParameter_NormalizationMode_BATCH_SIZE:
      normalizer = outer;
      break;
    case caffe::LossParameter_NormalizationMode_NONE:
      normalizer = 1;
      break;
    default:
      LOG(FATAL) << "Unknown normalization mode: "
                 << caffe::LossParameter_NormalizationMode_Name(mode);
  }
  // A batch whose labels are all ignored would otherwise divide by zero.
  return std::max(1.0, normalizer);
}

}  // namespace caffe_temperature
