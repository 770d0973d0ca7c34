#ifndef CAFFE_TEMPERATURE_TEMPERATURE_SOFTMAX_LAYER_HPP_
#define CAFFE_TEMPERATURE_TEMPERATURE_SOFTMAX_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe {

/**
 * @brief y = softmax(beta * x) over softmax_param.axis, beta = 1/T.
 *
 * beta comes from bottom[1] (one value, one per sample or one per position)
 * or from `scale_param { filler { type: "constant" value: beta } }`
 * (default 1, where the layer equals stock Softmax). See docs/spec.md.
 */
template <typename Dtype>
class TemperatureSoftmaxLayer : public Layer<Dtype> {
 public:
  explicit TemperatureSoftmaxLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "TemperatureSoftmax"; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MaxBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  // Where each position's beta lives: bottom[1], or the constant from
  // scale_param. gpu selects device or host pointers; a host beta is
  // validated here, a device one by Forward_gpu.
  caffe_temperature::BetaView<Dtype> Beta(const vector<Blob<Dtype>*>& bottom,
                                          bool gpu);

  // With no value to compute (no position, or no class), zeroes the beta
  // gradient asked for and returns true.
  bool BackwardOfEmpty(const vector<bool>& propagate_down,
                       const vector<Blob<Dtype>*>& bottom);

  caffe_temperature::SoftmaxShape shape_;
  /// beta from scale_param, as a one-element blob so that the CPU and the GPU
  /// paths read it the same way as a bottom beta.
  Blob<Dtype> constant_beta_;
  /// d loss / d beta of every position, before summing over the positions
  /// that share one beta element.
  Blob<Dtype> position_grad_;
  /// GPU: the per-chunk partial sums of RowSumsGPU (at least one value, so
  /// that it always has memory).
  Blob<Dtype> row_sums_scratch_;
  /// GPU: the index of the first invalid beta value, INT_MAX when none.
  Blob<int> bad_index_;
};

}  // namespace caffe

#endif  // CAFFE_TEMPERATURE_TEMPERATURE_SOFTMAX_LAYER_HPP_
