#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/layer_factory.hpp"
#include "caffe/util/io.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/labels_cpu.hpp"
#include "caffe_temperature/layer_params.hpp"
#include "layer_kernels.hpp"
#include "caffe_temperature/parallel.hpp"
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
  ignore_.enabled = loss_param.has_ignore_label();
  ignore_.value = loss_param.ignore_label();
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
  // Blob::FromProto CHECK-fails on an empty blob without naming the file.
  CHECK_GT(proto.data_size() + proto.double_data_size(), 0)
      << type() << " layer '" << this->layer_param_.name() << "': '" << source
      << "' (infogain_loss_param.source) holds no values; H must be C x C";
  infogain_.FromProto(proto);
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // Not LossLayer::Reshape: it requires x and label to share their first
  // axis, which is wrong for a softmax over axis 0.
  top[0]->Reshape(vector<int>());
  const int axis = bottom[0]->CanonicalAxisIndex(
      caffe_temperature::InfogainSoftmaxAxis(this->layer_param_));
  shape_.outer = bottom[0]->count(0, axis);
  shape_.channels = bottom[0]->shape(axis);
  shape_.inner = bottom[0]->count(axis + 1);
  const int C = shape_.channels;
  CHECK_GT(C, 0) << type() << " layer '" << this->layer_param_.name()
                 << "': axis " << axis << " of bottom[0] (shape "
                 << bottom[0]->shape_string() << ") holds the classes, and "
                 << "there is none: no label can be valid";
  CHECK_EQ(bottom[1]->count(), shape_.positions())
      << type() << " layer '" << this->layer_param_.name() << "': label "
      << "(bottom[1], shape " << bottom[1]->shape_string() << ") must hold one "
      << "label per position of bottom[0] (shape "
      << bottom[0]->shape_string() << ", softmax axis " << axis << ")";
  const Blob<Dtype>& H = Infogain(bottom);
  // In 64 bits: C * C passes INT_MAX from C = 46341, where an int product
  // would wrap and could even match a wrong H.
  const int64_t C_squared = static_cast<int64_t>(C) * C;
  CHECK_EQ(H.count(), C_squared)
      << type() << " layer '" << this->layer_param_.name() << "': the "
      << "infogain matrix H (" << (bottom.size() > 2 ? "bottom[2]" : "source")
      << ", shape " << H.shape_string() << ") must be C x C = " << C_squared
      << " values, C = " << C << " being the size of axis " << axis
      << " of bottom[0] (shape " << bottom[0]->shape_string() << ")";
  // H from `source` never changes, and its size has just been fixed to C x C:
  // its rows are summed (and its entries checked) on the first call only.
  // A bottom H is summed in every forward pass instead.
  if (sum_rows_H_.count() != C) {
    sum_rows_H_.Reshape(vector<int>(1, C));
    if (bottom.size() < 3) SumRowsOfInfogainCPU(infogain_);
  }
  if (top.size() > 1) top[1]->ReshapeLike(*bottom[0]);
  else prob_.ReshapeLike(*bottom[0]);
  // Memory is only allocated by the path that touches these.
  classes_.resize(shape_.positions());
  position_stats_.Reshape(vector<int>{2, shape_.positions()});
  loss_sums_.Reshape(vector<int>(1, 2));
  // The GPU sums the rows of H and the two rows of position_stats_.
  const int64_t scratch = std::max<int64_t>(
      1, std::max(caffe_temperature::RowSumsScratchCount(C, C),
                  caffe_temperature::RowSumsScratchCount(
                      2, shape_.positions())));
  row_sums_scratch_.Reshape(vector<int>(1, static_cast<int>(scratch)));
  bad_index_.Reshape(vector<int>(1, 2));
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::FailOnLabel(int position,
                                                      Dtype value) const {
  std::ostringstream expected;
  expected << "an integer in [0, " << shape_.channels << ")";
  if (ignore_.enabled) expected << " or ignore_label " << ignore_.value;
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
void SoftmaxWithInfogainLossLayer<Dtype>::FinishForward(
    Dtype loss_sum, int valid_count, const vector<Blob<Dtype>*>& top) {
  normalizer_ = caffe_temperature::LossNormalizer(
      normalization_, shape_.outer, shape_.inner, valid_count);
  top[0]->mutable_cpu_data()[0] = loss_sum / normalizer_;
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
  // A bottom H is summed in every forward pass: one vectorised pass over its
  // C x C entries, its rows split between the kernels' OpenMP threads. Not
  // BLAS's gemv: OpenBLAS's own threads met the OpenMP threads still
  // spinning after the kernels (4.2 ms instead of 0.19 ms at C = 1000 with
  // 2 threads). The same pass validates H exactly: an inf or NaN entry makes
  // its row's sum inf or NaN (IEEE, this file is not built with fast-math),
  // so only rows whose sum is not finite (a bad entry, or finite entries
  // that overflow) are checked entry by entry.
  // Four rows at a time: four independent chains of vector adds, where one
  // row's sum would wait on each add in turn (3x slower than BLAS at
  // C = 1000); a row's own sum still adds in one fixed order.
  const int groups = (C + 3) / 4;
  caffe_temperature::ParallelRanges(
      groups, static_cast<int64_t>(C) * C, [&](int begin, int end) {
        for (int group = begin; group < end; ++group) {
          const Dtype* rows[4];
          for (int k = 0; k < 4; ++k) {
            // Past the last row, repeat it: its sum is written once.
            const int row = std::min(4 * group + k, C - 1);
            rows[k] = h + static_cast<int64_t>(row) * C;
          }
          Dtype s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
          for (int col = 0; col < C; ++col) {
            s0 += rows[0][col];
            s1 += rows[1][col];
            s2 += rows[2][col];
            s3 += rows[3][col];
          }
          const Dtype group_sums[4] = {s0, s1, s2, s3};
          for (int k = 0; k < 4 && 4 * group + k < C; ++k) {
            sums[4 * group + k] = group_sums[k];
          }
        }
      });
  for (int row = 0; row < C; ++row) {
    if (std::isfinite(sums[row])) continue;
    for (int col = 0; col < C; ++col) {
      const Dtype value = h[row * C + col];
      if (!std::isfinite(value)) FailOnInfogainEntry(row * C + col, value);
    }
  }
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  if (bottom.size() > 2) SumRowsOfInfogainCPU(*bottom[2]);
  const int C = shape_.channels;
  // Stock Caffe gives an empty blob no memory: with no position (outer or
  // inner is 0), the loss is 0 and no blob is read.
  const bool empty = shape_.positions() == 0;
  const Dtype* label = empty ? NULL : bottom[1]->cpu_data();
  // The GPU kernels classify labels with the same function.
  int first_invalid = -1;
  const int valid_count = caffe_temperature::ClassifyLabelsCPU(
      label, shape_.positions(), C, ignore_,
      [&](int pos, caffe_temperature::LabelKind kind) {
        classes_[pos] = kind == caffe_temperature::kLabelValid
                            ? static_cast<int>(label[pos])
                            : -1;
      },
      &first_invalid);
  if (first_invalid >= 0) FailOnLabel(first_invalid, label[first_invalid]);

  Dtype loss = 0;
  bool plus_inf = false, minus_inf = false;
  if (!empty) {
    loss = caffe_temperature::layer_kernels::InfogainLossForwardCPU(
        shape_, bottom[0]->cpu_data(), classes_.data(),
        Infogain(bottom).cpu_data(), sum_rows_H_.cpu_data(),
        Prob(top)->mutable_cpu_data(), &plus_inf, &minus_inf);
  }
  // -H[l, c] log 0 for a -inf logit (a masked class) that H weighs: the
  // fast-math kernel reports the infinities instead of computing them.
  if (plus_inf) loss += std::numeric_limits<Dtype>::infinity();
  if (minus_inf) loss -= std::numeric_limits<Dtype>::infinity();
  FinishForward(loss, valid_count, top);
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  // No position: x's diff is empty, and has no memory.
  if (!propagate_down[0] || shape_.positions() == 0) return;
  // Label rows from the forward pass: its labels were validated there.
  caffe_temperature::layer_kernels::InfogainLossBackwardCPU(
      shape_, Prob(top)->cpu_data(), classes_.data(),
      Infogain(bottom).cpu_data(), sum_rows_H_.cpu_data(),
      top[0]->cpu_diff()[0] / normalizer_, bottom[0]->mutable_cpu_diff());
}

#ifdef CPU_ONLY
STUB_GPU(SoftmaxWithInfogainLossLayer);
#endif

INSTANTIATE_CLASS(SoftmaxWithInfogainLossLayer);
REGISTER_LAYER_CLASS(SoftmaxWithInfogainLoss);

}  // namespace caffe
