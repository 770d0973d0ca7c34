#ifndef CAFFE_TEMPERATURE_SOFTMAX_WITH_DISTILLATION_LOSS_LAYER_HPP_
#define CAFFE_TEMPERATURE_SOFTMAX_WITH_DISTILLATION_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe_temperature/labels.hpp"
#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe {

/**
 * @brief Knowledge-distillation loss (Hinton et al. 2015) on raw scores:
 *        T^2 KL(softmax(teacher / T) || softmax(student / T)), averaged over
 *        the positions as loss_param.normalization says.
 *
 * Bottoms: student, teacher (same shape) [, label]; the label bottom only
 * selects positions (ignore_label) and is validated. Tops: loss
 * [, student_prob = softmax(student / T)]. Only the student receives a
 * gradient, top_diff * T * (q - p) / norm; student_prob, like the prob top of
 * stock SoftmaxWithLoss, passes none back. See docs/spec.md.
 */
template <typename Dtype>
class SoftmaxWithDistillationLossLayer : public LossLayer<Dtype> {
 public:
  explicit SoftmaxWithDistillationLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const {
    return "SoftmaxWithDistillationLoss";
  }
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return 2; }
  virtual inline int MaxBottomBlobs() const { return 3; }
  virtual inline int ExactNumTopBlobs() const { return -1; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }
  /// The teacher and the labels are targets: force_backward leaves them out.
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

  /// Fails, naming the first offending position and value, unless every
  /// label is valid or ignored (host pointer).
  void CheckLabels(const Dtype* label) const;
  /// Fails, naming the label at `position` and its value.
  void FailOnLabel(int position, Dtype value) const;
  /// Fails when the net asks for a gradient to the teacher or the labels.
  void CheckPropagateDown(const vector<bool>& propagate_down) const;
  /// Stores the normalizer for Backward and writes loss and student_prob.
  void FinishForward(double kl_sum, int valid_count,
                     const vector<Blob<Dtype>*>& top);
  /// The factor s in d loss / d student = s * (q - p) at valid positions.
  Dtype StudentDiffScale(const vector<Blob<Dtype>*>& top) const;

  caffe_temperature::SoftmaxShape shape_;
  Dtype beta_;
  caffe_temperature::IgnoreLabel ignore_;
  LossParameter_NormalizationMode normalization_;
  /// The divisor of the last forward pass, which Backward scales by.
  double normalizer_;

  /// q = softmax(beta * student), shared with top[1].
  Blob<Dtype> prob_;
  /// p = softmax(beta * teacher).
  Blob<Dtype> teacher_prob_;
  /// CPU path only: the forward's scratch (DistillationForwardCPU).
  std::vector<Dtype> scratch_;
  /// Per position, as rows of a 3 x positions matrix: the KL divergence,
  /// 1 where the position counts (0 where its label is ignored), and, on the
  /// GPU, 1 where its label is invalid. Backward reads row 1.
  Blob<Dtype> position_stats_;
  /// GPU: the three row sums of position_stats_.
  Blob<Dtype> stats_sum_;
  /// GPU: the per-chunk partial sums of RowSumsGPU (at least one value, so
  /// that it always has memory).
  Blob<Dtype> row_sums_scratch_;
};

}  // namespace caffe

#endif  // CAFFE_TEMPERATURE_SOFTMAX_WITH_DISTILLATION_LOSS_LAYER_HPP_
