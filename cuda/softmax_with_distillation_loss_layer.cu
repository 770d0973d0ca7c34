#include <vector>

#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/softmax_with_distillation_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // No position: a zero loss, as on the CPU (empty blobs have no memory).
  if (shape_.positions() == 0) {
    FinishForward(0, 0, top);
    return;
  }
  const bool has_label = bottom.size() == 3;
  caffe_temperature::DistillationForwardGPU(
      shape_, beta_, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      has_label ? bottom[2]->gpu_data() : NULL, ignore_,
      prob_.mutable_gpu_data(), teacher_prob_.mutable_gpu_data(),
      position_stats_.mutable_gpu_data());
  // Sums of the three rows, then one small copy: the loss is a host scalar
  // in Caffe, and a bad label must stop the net here.
  caffe_temperature::RowSumsGPU(3, shape_.positions(),
                                position_stats_.gpu_data(),
                                row_sums_scratch_.mutable_gpu_data(),
                                stats_sum_.mutable_gpu_data());
  const Dtype* sums = stats_sum_.cpu_data();
  if (sums[2] > 0) {
    // The error path alone copies the labels, to name the first bad one.
    CheckLabels(bottom[2]->cpu_data());
  }
  FinishForward(sums[0], static_cast<int>(sums[1] + 0.5), top);
}

template <typename Dtype>
void SoftmaxWithDistillationLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  if (!propagate_down[0] || shape_.positions() == 0) return;
  caffe_temperature::DistillationBackwardGPU(
      shape_, StudentDiffScale(top), prob_.gpu_data(), teacher_prob_.gpu_data(),
      position_stats_.gpu_data() + shape_.positions(),
      bottom[0]->mutable_gpu_diff());
}

INSTANTIATE_LAYER_GPU_FUNCS(SoftmaxWithDistillationLossLayer);

}  // namespace caffe
