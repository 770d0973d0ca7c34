#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/layer_factory.hpp"
#include "caffe/util/io.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/layer_params.hpp"
#include "caffe_temperature/softmax_with_infogain_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // Stock loss layers weigh only the loss top by default and then reject a
  // prob top unless loss_weight is given twice; the probabilities are no loss.
  if (this->layer_param_.loss_weight_size() == 0 && top.size() > 1) {
    this->layer_param_.add_loss_weight(1);
    this->layer_param_.add_loss_weight(0);
  }
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  const LossParameter& loss_param = this->layer_param_.loss_param();
  has_ignore_label_ = loss_param.has_ignore_label();
  ignore_label_ = loss_param.ignore_label();
  normalization_ = caffe_temperature::NormalizationMode(this->layer_param_);
  if (bottom.size() > 2) return;

  const string& source = this->layer_param_.infogain_loss_param().source();
  CHECK(this->layer_param_.infogain_loss_param().has_source())
      << type() << " layer '" << this->layer_param_.name() << "' has no "
      << "infogain matrix: give H (C x C) as a third bottom, or a "
      << "binaryproto file as infogain_loss_param { source: \"H.binaryproto\" }";
  // ReadProtoFromBinaryFile CHECK-fails on a missing file with a message that
  // names neither the layer nor the parameter: test readability first.
  CHECK(std::ifstream(source.c_str(), std::ios::binary).good())
      << type() << " layer '" << this->layer_param_.name() << "': cannot "
      << "read the infogain matrix file infogain_loss_param.source = '"
      << source << "' (missing or unreadable)";
  BlobProto proto;
  CHECK(ReadProtoFromBinaryFile(source, &proto))
      << type() << " layer '" << this->layer_param_.name() << "': '" << source
      << "' (infogain_loss_param.source) is not a binaryproto BlobProto";
  infogain_.FromProto(proto);
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // Not LossLayer::Reshape: it requires x and label to share their first
  // axis, which is wrong for a softmax over axis 0.
  top[0]->Reshape(vector<int>());
  const int axis = bottom[0]->CanonicalAxisIndex(
      this->layer_param_.infogain_loss_param().axis());
  shape_.outer = bottom[0]->count(0, axis);
  shape_.channels = bottom[0]->shape(axis);
  shape_.inner = bottom[0]->count(axis + 1);
  const int C = shape_.channels;
  CHECK_EQ(bottom[1]->count(), shape_.positions())
      << type() << " layer '" << this->layer_param_.name() << "': label "
      << "(bottom[1], shape " << bottom[1]->shape_string() << ") must hold one "
      << "label per position of bottom[0] (shape "
      << bottom[0]->shape_string() << ", softmax axis " << axis << ")";
  const Blob<Dtype>& H = Infogain(bottom);
  CHECK_EQ(H.count(), C * C)
      << type() << " layer '" << this->layer_param_.name() << "': the "
      << "infogain matrix H (" << (bottom.size() > 2 ? "bottom[2]" : "source")
      << ", shape " << H.shape_string() << ") must be C x C = " << C * C
      << " values, C = " << C << " being the size of axis " << axis
      << " of bottom[0] (shape " << bottom[0]->shape_string() << ")";
  // H from `source` never changes, and its size has just been fixed to C x C:
  // its rows are summed (and its entries checked) on the first call only.
  // A bottom H is summed in every forward pass instead.
  if (bottom.size() > 2 || sum_rows_H_.count() != C) {
    sum_rows_H_.Reshape(vector<int>(1, C));
    if (bottom.size() < 3) SumRowsOfInfogainCPU(infogain_);
  }
  if (top.size() > 1) top[1]->ReshapeLike(*bottom[0]);
  else prob_.ReshapeLike(*bottom[0]);
  // Memory is only allocated by the path that touches these.
  log_prob_.ReshapeLike(*bottom[0]);
  label_rows_.resize(shape_.positions());
  position_loss_.Reshape(vector<int>(1, shape_.positions()));
  position_valid_.Reshape(vector<int>(1, shape_.positions()));
  loss_sums_.Reshape(vector<int>(1, 2));
  bad_index_.Reshape(vector<int>(1, 2));
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::FailOnLabel(int position,
                                                      Dtype value) const {
  std::ostringstream expected;
  expected << "an integer in [0, " << shape_.channels << ")";
  if (has_ignore_label_) expected << " or ignore_label " << ignore_label_;
  LOG(FATAL) << type() << " layer '" << this->layer_param_.name()
             << "': label at position " << position << " (outer index "
             << position / shape_.inner << ", inner index "
             << position % shape_.inner << ") is " << value << "; expected "
             << expected.str();
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::FailOnInfogainEntry(
    int index, Dtype value) const {
  LOG(FATAL) << type() << " layer '" << this->layer_param_.name()
             << "': infogain matrix entry H[" << index / shape_.channels
             << ", " << index % shape_.channels << "] = " << value
             << " is not finite; every entry of H must be finite";
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::CheckPropagateDown(
    const vector<bool>& propagate_down) const {
  for (int i = 1; i < propagate_down.size(); ++i) {
    CHECK(!propagate_down[i])
        << type() << " layer '" << this->layer_param_.name() << "' cannot "
        << "backpropagate to " << (i == 1 ? "the label" : "the infogain matrix")
        << " (bottom[" << i << "]); set propagate_down: false for it";
  }
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::SumRowsOfInfogainCPU(
    const Blob<Dtype>& H) {
  const int C = shape_.channels;
  const Dtype* h = H.cpu_data();
  Dtype* sums = sum_rows_H_.mutable_cpu_data();
  for (int row = 0; row < C; ++row) {
    Dtype sum = 0;
    for (int col = 0; col < C; ++col) {
      const Dtype value = h[row * C + col];
      if (!std::isfinite(value)) FailOnInfogainEntry(row * C + col, value);
      sum += value;
    }
    sums[row] = sum;
  }
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  if (bottom.size() > 2) SumRowsOfInfogainCPU(*bottom[2]);
  const int C = shape_.channels, inner = shape_.inner;
  const Dtype* label = bottom[1]->cpu_data();
  int valid_count = 0;
  for (int pos = 0; pos < shape_.positions(); ++pos) {
    const Dtype value = label[pos];
    if (has_ignore_label_ && value == ignore_label_) {
      label_rows_[pos] = -1;
      continue;
    }
    // Also rejects NaN, which fails every comparison.
    if (!(value >= 0 && value < C && value == std::floor(value))) {
      FailOnLabel(pos, value);
    }
    label_rows_[pos] = static_cast<int>(value) * C;
    ++valid_count;
  }

  const Dtype one = 1;
  const caffe_temperature::BetaView<Dtype> beta = {&one, 0, 0};
  caffe_temperature::LogSoftmaxForwardCPU(
      shape_, bottom[0]->cpu_data(), beta, log_prob_.mutable_cpu_data(),
      Prob(top)->mutable_cpu_data());

  // One dot product per valid position, of H's row with the position's
  // log p (stride `inner`); BLAS vectorises the contiguous inner == 1 case.
  const Dtype* h = Infogain(bottom).cpu_data();
  const Dtype* log_prob = log_prob_.cpu_data();
  Dtype loss = 0;
  for (int pos = 0; pos < shape_.positions(); ++pos) {
    if (label_rows_[pos] < 0) continue;
    const int o = pos / inner, i = pos % inner;
    loss -= caffe_cpu_strided_dot(C, h + label_rows_[pos], 1,
                                  log_prob + o * C * inner + i, inner);
  }
  normalizer_ = caffe_temperature::LossNormalizer(
      normalization_, shape_.outer, inner, valid_count);
  top[0]->mutable_cpu_data()[0] = loss / normalizer_;
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  if (!propagate_down[0]) return;
  const int C = shape_.channels, inner = shape_.inner;
  const Dtype scale = top[0]->cpu_diff()[0] / normalizer_;
  const Dtype* h = Infogain(bottom).cpu_data();
  const Dtype* sum_rows = sum_rows_H_.cpu_data();
  const Dtype* prob = Prob(top)->cpu_data();
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  // Positions from the forward pass: its labels were validated there.
  for (int pos = 0; pos < shape_.positions(); ++pos) {
    const int row = label_rows_[pos];
    const int offset = (pos / inner) * C * inner + pos % inner;
    const Dtype* p = prob + offset;
    Dtype* dx = diff + offset;
    if (row < 0) {
      for (int c = 0; c < C; ++c) dx[c * inner] = 0;
      continue;
    }
    const Dtype p_scale = scale * sum_rows[row / C];
    const Dtype* h_row = h + row;
    for (int c = 0; c < C; ++c) {
      dx[c * inner] = p_scale * p[c * inner] - scale * h_row[c];
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(SoftmaxWithInfogainLossLayer);
#endif

INSTANTIATE_CLASS(SoftmaxWithInfogainLossLayer);
REGISTER_LAYER_CLASS(SoftmaxWithInfogainLoss);

}  // namespace caffe
