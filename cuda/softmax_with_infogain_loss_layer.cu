#include <climits>
#include <vector>

#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/layer_params.hpp"
#include "caffe_temperature/softmax_with_infogain_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // No position: a zero loss, as on the CPU (empty blobs have no memory);
  // a bottom H is still checked.
  if (shape_.positions() == 0) {
    if (bottom.size() > 2) SumRowsOfInfogainCPU(*bottom[2]);
    FinishForward(0, 0, top);
    return;
  }
  const Blob<Dtype>& H = Infogain(bottom);
  const int C = shape_.channels;
  int* bad_index = bad_index_.mutable_gpu_data();
  if (bottom.size() > 2) {
    caffe_temperature::FindNonFiniteGPU(H.count(), H.gpu_data(),
                                        bad_index + 1);
    caffe_temperature::RowSumsGPU(C, C, H.gpu_data(),
                                  row_sums_scratch_.mutable_gpu_data(),
                                  sum_rows_H_.mutable_gpu_data());
  }
  caffe_temperature::InfogainLossForwardGPU(
      shape_, bottom[0]->gpu_data(), bottom[1]->gpu_data(), ignore_,
      H.gpu_data(), sum_rows_H_.gpu_data(), Prob(top)->mutable_gpu_data(),
      position_stats_.mutable_gpu_data(), bad_index);
  caffe_temperature::RowSumsGPU(2, shape_.positions(),
                                position_stats_.gpu_data(),
                                row_sums_scratch_.mutable_gpu_data(),
                                loss_sums_.mutable_gpu_data());

  // The kernels validated H and the labels; only these two indices and the
  // two sums (16 to 24 bytes) come back, so that a bad value stops the net
  // with the same message as on the CPU. The offending value itself is read
  // on the host only on the way to LOG(FATAL).
  const int* bad = bad_index_.cpu_data();
  if (bottom.size() > 2 && bad[1] != INT_MAX) {
    FailOnInfogainEntry(bad[1], H.cpu_data()[bad[1]]);
  }
  if (bad[0] != INT_MAX) FailOnLabel(bad[0], bottom[1]->cpu_data()[bad[0]]);
  const Dtype* sums = loss_sums_.cpu_data();
  FinishForward(sums[0], static_cast<int>(sums[1]), top);
}

template <typename Dtype>
void SoftmaxWithInfogainLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  if (!propagate_down[0] || shape_.positions() == 0) return;
  caffe_temperature::InfogainLossBackwardGPU(
      shape_, Prob(top)->gpu_data(), bottom[1]->gpu_data(), ignore_,
      Infogain(bottom).gpu_data(), sum_rows_H_.gpu_data(), top[0]->gpu_diff(),
      Dtype(1) / normalizer_, bottom[0]->mutable_gpu_diff());
}

INSTANTIATE_LAYER_GPU_FUNCS(SoftmaxWithInfogainLossLayer);

}  // namespace caffe
