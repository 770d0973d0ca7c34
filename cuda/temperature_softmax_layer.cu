#include <climits>
#include <vector>

#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/layer_params.hpp"
#include "caffe_temperature/temperature_softmax_layer.hpp"

namespace caffe {

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // No value: y is empty, as on the CPU (empty blobs have no memory).
  if (shape_.count() == 0) return;
  if (bottom.size() > 1) {
    // Validated on the device: only the index of the first bad value comes
    // back, and the values themselves only on the way to the error message.
    const Blob<Dtype>& beta = *bottom[1];
    caffe_temperature::FindInvalidBetaGPU(beta.count(), beta.gpu_data(),
                                          bad_index_.mutable_gpu_data());
    if (bad_index_.cpu_data()[0] != INT_MAX) {
      caffe_temperature::CheckInverseTemperatures(
          this->layer_param_, beta.cpu_data(), beta.count());
    }
  }
  caffe_temperature::SoftmaxForwardGPU(shape_, bottom[0]->gpu_data(),
                                       Beta(bottom, true),
                                       top[0]->mutable_gpu_data());
}

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (BackwardOfEmpty(propagate_down, bottom)) return;
  const Dtype* y = top[0]->gpu_data();
  const Dtype* dy = top[0]->gpu_diff();
  Dtype* dx = propagate_down[0] ? bottom[0]->mutable_gpu_diff() : NULL;
  if (bottom.size() > 1 && propagate_down[1]) {
    // Both gradients in one pass: they share dot(dy, y).
    caffe_temperature::SoftmaxBackwardWithBetaGradientGPU(
        shape_, bottom[0]->gpu_data(), y, dy, Beta(bottom, true), dx,
        position_grad_.mutable_gpu_data());
    // Positions sharing one beta element are contiguous: a row sum.
    const int n = bottom[1]->count();
    caffe_temperature::RowSumsGPU(n, position_grad_.count() / n,
                                  position_grad_.gpu_data(),
                                  row_sums_scratch_.mutable_gpu_data(),
                                  bottom[1]->mutable_gpu_diff());
  } else if (dx) {
    caffe_temperature::SoftmaxBackwardGPU(shape_, y, dy, Beta(bottom, true),
                                          dx);
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(TemperatureSoftmaxLayer);

}  // namespace caffe
