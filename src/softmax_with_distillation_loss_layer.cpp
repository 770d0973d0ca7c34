#include <algorithm>
#include <vector>

#include "caffe/layer_factory.hpp"
#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/labels_cpu.hpp"
#include "caffe_temperature/layer_params.hpp"
#include "layer_kernels.hpp"
#include "caffe_temperature/softmax_with_distillation_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // Stock loss layers default to one loss weight, which Layer::SetUp then
  // refuses for two tops; student_prob is an output, not a loss.
  if (this->layer_param_.loss_weight_size() == 0 && top.size() == 2) {
    this->layer_param_.add_loss_weight(Dtype(1));
    this->layer_param_.add_loss_weight(Dtype(0));
  }
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  beta_ = static_cast<Dtype>(
      caffe_temperature::ReadInverseTemperature(this->layer_param_));
  const LossParameter& loss_param = this->layer_param_.loss_param();
  ignore_.enabled = loss_param.has_ignore_label();
  ignore_.value = loss_param.ignore_label();
  CHECK(!ignore_.enabled || bottom.size() == 3)
      << type() << " layer '" << this->layer_param_.name() << "': "
      << "loss_param.ignore_label = " << ignore_.value << " needs the label "
      << "bottom (bottom[2]), which selects the positions to ignore; give "
      << "bottoms student, teacher, label or drop ignore_label";
  normalization_ = caffe_temperature::NormalizationMode(this->layer_param_);
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  CHECK(bottom[0]->shape() == bottom[1]->shape())
      << type() << " layer '" << this->layer_param_.name() << "': student "
      << "(bottom[0]) has shape " << bottom[0]->shape_string() << " but "
      << "teacher (bottom[1]) has shape " << bottom[1]->shape_string()
      << "; both must be logits of the same shape";
  LossLayer<Dtype>::Reshape(bottom, top);
  const int axis = bottom[0]->CanonicalAxisIndex(
      this->layer_param_.softmax_param().axis());
  shape_.outer = bottom[0]->count(0, axis);
  shape_.channels = bottom[0]->shape(axis);
  shape_.inner = bottom[0]->count(axis + 1);
  CHECK_GT(shape_.channels, 0)
      << type() << " layer '" << this->layer_param_.name() << "': axis "
      << axis << " of the logits (shape " << bottom[0]->shape_string()
      << ") holds the classes, and there is none: no distribution to compare";
  const int positions = shape_.positions();
  if (bottom.size() == 3) {
    CHECK_EQ(bottom[2]->count(), positions)
        << type() << " layer '" << this->layer_param_.name() << "': label "
        << "(bottom[2]) shape " << bottom[2]->shape_string() << " must hold "
        << "one label per position, i.e. " << positions << " values for "
        << "logits " << bottom[0]->shape_string() << " and softmax axis "
        << axis;
  }
  prob_.ReshapeLike(*bottom[0]);
  teacher_prob_.ReshapeLike(*bottom[0]);
  position_stats_.Reshape(vector<int>{3, positions});
  stats_sum_.Reshape(vector<int>(1, 3));
  // The GPU sums the three rows of position_stats_.
  const int64_t scratch = std::max<int64_t>(
      1, caffe_temperature::RowSumsScratchCount(3, positions));
  row_sums_scratch_.Reshape(vector<int>(1, static_cast<int>(scratch)));
  if (top.size() == 2) top[1]->ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::CheckLabels(
    const Dtype* label) const {
  int first_invalid = -1;
  caffe_temperature::ClassifyLabelsCPU(
      label, shape_.positions(), shape_.channels, ignore_,
      [](int, caffe_temperature::LabelKind) {}, &first_invalid);
  if (first_invalid >= 0) FailOnLabel(first_invalid, label[first_invalid]);
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::FailOnLabel(int position,
                                                          Dtype value) const {
  LOG(FATAL) << type() << " layer '" << this->layer_param_.name()
             << "': label (bottom[2]) at position " << position << " (sample "
             << position / shape_.inner << ", index "
             << position % shape_.inner << ") is " << value
             << "; expected an integer in [0, " << shape_.channels << ")"
             << (ignore_.enabled ? " or ignore_label" : "");
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::CheckPropagateDown(
    const vector<bool>& propagate_down) const {
  CHECK(!propagate_down[1])
      << type() << " layer '" << this->layer_param_.name() << "' cannot "
      << "backpropagate to the teacher (bottom[1]): its logits are the "
      << "target. If the teacher is computed in the same net, add "
      << "'propagate_down: true propagate_down: false"
      << (propagate_down.size() == 3 ? " propagate_down: false" : "")
      << "' to this layer";
  CHECK(propagate_down.size() < 3 || !propagate_down[2])
      << type() << " layer '" << this->layer_param_.name() << "' cannot "
      << "backpropagate to the labels (bottom[2])";
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::FinishForward(
    double kl_sum, int valid_count, const vector<Blob<Dtype>*>& top) {
  normalizer_ = caffe_temperature::LossNormalizer(
      normalization_, shape_.outer, shape_.inner, valid_count);
  // T^2 keeps the gradient, T (q - p), at the size of a hard-label one.
  const double temperature = 1.0 / beta_;
  top[0]->mutable_cpu_data()[0] =
      static_cast<Dtype>(temperature * temperature * kl_sum / normalizer_);
  if (top.size() == 2) top[1]->ShareData(prob_);
}

template <typename Dtype>
Dtype SoftmaxWithDistillationLossLayer<Dtype>::StudentDiffScale(
    const vector<Blob<Dtype>*>& top) const {
  // T^2 * d KL / d student = T^2 * (q - p) / T = (q - p) / beta.
  return static_cast<Dtype>(top[0]->cpu_diff()[0] / (beta_ * normalizer_));
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int positions = shape_.positions();
  // No position (outer or inner is 0): a zero loss, and stock Caffe gives the
  // empty blobs no memory to read.
  if (positions == 0) {
    FinishForward(0, 0, top);
    return;
  }
  const Dtype* label = bottom.size() == 3 ? bottom[2]->cpu_data() : NULL;
  Dtype* kl = position_stats_.mutable_cpu_data();
  Dtype* valid = kl + positions;
  if (label) {
    int first_invalid = -1;
    caffe_temperature::ClassifyLabelsCPU(
        label, positions, shape_.channels, ignore_,
        [&](int pos, caffe_temperature::LabelKind kind) {
          valid[pos] = kind == caffe_temperature::kLabelValid;
        },
        &first_invalid);
    if (first_invalid >= 0) FailOnLabel(first_invalid, label[first_invalid]);
  } else {
    std::fill(valid, valid + positions, Dtype(1));
  }
  caffe_temperature::layer_kernels::DistillationForwardCPU(
      shape_, beta_, bottom[0]->cpu_data(), bottom[1]->cpu_data(), valid,
      prob_.mutable_cpu_data(), teacher_prob_.mutable_cpu_data(), kl,
      &scratch_);
  double kl_sum = 0;
  int valid_count = 0;
  for (int pos = 0; pos < positions; ++pos) {
    if (valid[pos] == 0) continue;
    kl_sum += kl[pos];
    ++valid_count;
  }
  FinishForward(kl_sum, valid_count, top);
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  // No position: the student's diff is empty, and has no memory.
  if (!propagate_down[0] || shape_.positions() == 0) return;
  caffe_temperature::layer_kernels::DistillationBackwardCPU(
      shape_, StudentDiffScale(top), prob_.cpu_data(),
      teacher_prob_.cpu_data(), position_stats_.cpu_data() + shape_.positions(),
      bottom[0]->mutable_cpu_diff());
}

#ifdef CPU_ONLY
STUB_GPU(SoftmaxWithDistillationLossLayer);
#endif

INSTANTIATE_CLASS(SoftmaxWithDistillationLossLayer);
REGISTER_LAYER_CLASS(SoftmaxWithDistillationLoss);

}  // namespace caffe
