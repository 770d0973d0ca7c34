#include <vector>

#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/temperature_softmax_layer.hpp"

namespace caffe {

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  caffe_temperature::SoftmaxForwardGPU(shape_, bottom[0]->gpu_data(),
                                       Beta(bottom, true),
                                       top[0]->mutable_gpu_data());
}

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  const Dtype* y = top[0]->gpu_data();
  const Dtype* dy = top[0]->gpu_diff();
  if (bottom.size() > 1 && propagate_down[1]) {
    caffe_temperature::SoftmaxBetaGradientGPU(
        shape_, bottom[0]->gpu_data(), y, dy,
        position_grad_.mutable_gpu_data());
    // Positions sharing one beta element are contiguous: a row sum.
    caffe_gpu_gemv<Dtype>(CblasNoTrans, bottom[1]->count(), ones_.count(),
                          Dtype(1), position_grad_.gpu_data(),
                          ones_.gpu_data(), Dtype(0),
                          bottom[1]->mutable_gpu_diff());
  }
  if (propagate_down[0]) {
    caffe_temperature::SoftmaxBackwardGPU(shape_, y, dy, Beta(bottom, true),
                                          bottom[0]->mutable_gpu_diff());
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(TemperatureSoftmaxLayer);

}  // namespace caffe
