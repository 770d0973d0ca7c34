#ifndef CAFFE_TEMPERATURE_SOFTMAX_WITH_INFOGAIN_LOSS_LAYER_HPP_
#define CAFFE_TEMPERATURE_SOFTMAX_WITH_INFOGAIN_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe_temperature/labels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe {

/**
 * @brief Infogain loss on raw scores:
 *   loss = -(1/norm) sum_{valid positions} sum_c H[l, c] log softmax(x)_c.
 *
 * Bottoms: x (logits; the softmax runs over infogain_loss_param.axis), label
 * (one integer per position, or loss_param.ignore_label) and, optionally, H
 * (C x C; otherwise read from the binaryproto at infogain_loss_param.source).
 * Tops: loss and, optionally, the softmax probabilities.
 *
 * Unlike stock InfogainLoss, log p is computed as a log-softmax, never as the
 * log of a clamped probability, so the loss and its gradient stay exact for
 * any finite logits. See docs/spec.md.
 */
template <typename Dtype>
class SoftmaxWithInfogainLossLayer : public LossLayer<Dtype> {
 public:
  explicit SoftmaxWithInfogainLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SoftmaxWithInfogainLoss"; }
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 3; }
  virtual inline int ExactNumTopBlobs() const { return -1; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }

  /// Only the scores take a gradient: never the label, never H.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// H: bottom[2] when given, else the matrix read from `source`.
  const Blob<Dtype>& Infogain(const vector<Blob<Dtype>*>& bottom) const {
    return bottom.size() > 2 ? *bottom[2] : infogain_;
  }
  /// Where the probabilities go: the prob top when there is one.
  Blob<Dtype>* Prob(const vector<Blob<Dtype>*>& top) {
    return top.size() > 1 ? top[1] : &prob_;
  }
  /// Sums the rows of H into sum_rows_H_ on the host and checks that every
  /// entry of H is finite.
  void SumRowsOfInfogainCPU(const Blob<Dtype>& H);
  /// The LOG(FATAL)s that both paths share, so that messages agree.
  void FailOnLabel(int position, Dtype value) const;
  void FailOnInfogainEntry(int index, Dtype value) const;
  /// Stores the normalizer for Backward and writes the loss.
  void FinishForward(Dtype loss_sum, int valid_count,
                     const vector<Blob<Dtype>*>& top);
  /// Refuses a gradient request for the label or H.
  void CheckPropagateDown(const vector<bool>& propagate_down) const;

  caffe_temperature::SoftmaxShape shape_;
  caffe_temperature::IgnoreLabel ignore_;
  LossParameter_NormalizationMode normalization_;
  /// The divisor of the last forward pass, reused by the backward pass.
  Dtype normalizer_;

  /// H read from `source` (unused when H is bottom[2]).
  Blob<Dtype> infogain_;
  /// sum_k H[l, k] for every l: computed once per H (at setup for `source`,
  /// once per forward pass for bottom[2]), never per position.
  Blob<Dtype> sum_rows_H_;
  /// Probabilities when the layer has no prob top.
  Blob<Dtype> prob_;
  /// CPU: the class l of each position, -1 where ignored.
  vector<int> classes_;
  /// GPU: per position, as rows of a 2 x positions matrix, the loss and 1
  /// where the position counts (0 where its label is ignored).
  Blob<Dtype> position_stats_;
  /// GPU: {sum of losses, number of valid positions}.
  Blob<Dtype> loss_sums_;
  /// GPU: the per-chunk partial sums of RowSumsGPU (at least one value, so
  /// that it always has memory).
  Blob<Dtype> row_sums_scratch_;
  /// GPU: {first bad label position, first non-finite H index}, INT_MAX when
  /// none; validation is done by the kernels and reported from the host.
  Blob<int> bad_index_;
};

}  // namespace caffe

#endif  // CAFFE_TEMPERATURE_SOFTMAX_WITH_INFOGAIN_LOSS_LAYER_HPP_
