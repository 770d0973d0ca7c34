#ifndef CAFFE_TEMPERATURE_LAYER_PARAMS_HPP_
#define CAFFE_TEMPERATURE_LAYER_PARAMS_HPP_

#include <string>

#include "caffe/proto/caffe.pb.h"

// Reading the plugin's parameters out of stock Caffe messages (docs/spec.md,
// "Rules for every layer": stock caffe.proto only).

namespace caffe_temperature {

// beta = 1/T from `scale_param { filler { type: "constant" value: beta } }`,
// 1 when the layer has no scale_param. Fails (glog FATAL) on a filler that is
// not constant, or on a beta that is not finite and > 0, with the message
// showing the correct syntax.
double ReadInverseTemperature(const caffe::LayerParameter& param);

// Fails (glog FATAL) when any of the n values is not finite and > 0, naming
// the layer, the index and the value.
template <typename Dtype>
void CheckInverseTemperatures(const caffe::LayerParameter& param,
                              const Dtype* beta, int n);

// The softmax axis of SoftmaxWithInfogainLoss: infogain_loss_param.axis, or
// softmax_param.axis with a caffe.proto whose InfogainLossParameter has no
// axis (the SSD fork's, NVIDIA's). CMake finds out which, at configure time.
int InfogainSoftmaxAxis(const caffe::LayerParameter& param);

// The normalization mode of a loss layer, mapping the deprecated `normalize`
// field as stock SoftmaxWithLoss does.
caffe::LossParameter_NormalizationMode NormalizationMode(
    const caffe::LayerParameter& param);

// The divisor of a loss summed over positions, as stock SoftmaxWithLoss
// computes it (never below 1). valid_count < 0 means "every position".
double LossNormalizer(caffe::LossParameter_NormalizationMode mode, int outer,
                      int inner, int valid_count);

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_LAYER_PARAMS_HPP_
