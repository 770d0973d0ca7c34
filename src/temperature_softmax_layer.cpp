#include <algorithm>
#include <numeric>
#include <vector>

#include "caffe/layer_factory.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/gpu_kernels.hpp"
#include "caffe_temperature/layer_params.hpp"
#include "layer_kernels.hpp"
#include "caffe_temperature/temperature_softmax_layer.hpp"

namespace caffe {

using caffe_temperature::BetaView;

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  constant_beta_.Reshape(vector<int>(1, 1));
  bad_index_.Reshape(vector<int>(1, 1));
  constant_beta_.mutable_cpu_data()[0] =
      static_cast<Dtype>(caffe_temperature::ReadInverseTemperature(
          this->layer_param_));
  // The beta gradient needs x, which an in-place layer overwrites with y.
  const bool beta_grad_declared_off =
      this->layer_param_.propagate_down_size() == 2 &&
      !this->layer_param_.propagate_down(1);
  CHECK(bottom.size() == 1 || top[0] != bottom[0] || beta_grad_declared_off)
      << type() << " layer '" << this->layer_param_.name() << "' runs in "
      << "place with beta as bottom[1]: the gradient to beta needs the input, "
      << "which in-place computation overwrites. Give the top its own name, "
      << "or declare that beta takes no gradient with "
      << "'propagate_down: true propagate_down: false'.";
}

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int axis = bottom[0]->CanonicalAxisIndex(
      this->layer_param_.softmax_param().axis());
  shape_.outer = bottom[0]->count(0, axis);
  shape_.channels = bottom[0]->shape(axis);
  shape_.inner = bottom[0]->count(axis + 1);
  top[0]->ReshapeLike(*bottom[0]);
  if (bottom.size() < 2) return;
  const int n = bottom[1]->count();
  CHECK(n == 1 || n == shape_.outer || n == shape_.positions())
      << type() << " layer '" << this->layer_param_.name() << "': beta "
      << "(bottom[1]) has " << n << " values; expected 1 (shared), "
      << shape_.outer << " (one per sample) or " << shape_.positions()
      << " (one per position) for input shape " << bottom[0]->shape_string()
      << " and softmax axis " << axis;
  position_grad_.Reshape(vector<int>(1, shape_.positions()));
  // The beta gradient sums position_grad_ as n rows on the GPU.
  const int64_t scratch = caffe_temperature::RowSumsScratchCount(
      n, n > 0 ? shape_.positions() / n : 0);
  row_sums_scratch_.Reshape(
      vector<int>(1, static_cast<int>(std::max<int64_t>(scratch, 1))));
}

template <typename Dtype>
BetaView<Dtype> TemperatureSoftmaxLayer<Dtype>::Beta(
    const vector<Blob<Dtype>*>& bottom, bool gpu) {
  BetaView<Dtype> view = {NULL, 0, 0};
  if (bottom.size() < 2) {
    view.data = gpu ? constant_beta_.gpu_data() : constant_beta_.cpu_data();
    return view;
  }
  const Blob<Dtype>& beta = *bottom[1];
  // A bad beta must stop the net instead of turning every probability into
  // NaN; Forward_gpu checks it on the device instead.
  if (!gpu) {
    caffe_temperature::CheckInverseTemperatures(this->layer_param_,
                                                beta.cpu_data(), beta.count());
  }
  view.data = gpu ? beta.gpu_data() : beta.cpu_data();
  if (beta.count() == shape_.positions()) {
    view.outer_stride = shape_.inner;
    view.inner_stride = 1;
  } else if (beta.count() == shape_.outer) {
    view.outer_stride = 1;
  }
  return view;
}

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // No value (no position, or no class): y is empty, and stock Caffe gives an
  // empty blob no memory to read.
  if (shape_.count() == 0) return;
  caffe_temperature::layer_kernels::SoftmaxForwardCPU(
      shape_, bottom[0]->cpu_data(), Beta(bottom, false),
      top[0]->mutable_cpu_data());
}

template <typename Dtype>
bool TemperatureSoftmaxLayer<Dtype>::BackwardOfEmpty(
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (shape_.count() != 0) return false;
  // Each beta's gradient is an empty sum, and the empty blobs have no memory
  // to compute it from.
  if (bottom.size() > 1 && propagate_down[1] && bottom[1]->count() > 0) {
    caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  }
  return true;
}

template <typename Dtype>
void TemperatureSoftmaxLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (BackwardOfEmpty(propagate_down, bottom)) return;
  const Dtype* y = top[0]->cpu_data();
  const Dtype* dy = top[0]->cpu_diff();
  if (bottom.size() > 1 && propagate_down[1]) {
    caffe_temperature::layer_kernels::SoftmaxBetaGradientCPU(
        shape_, bottom[0]->cpu_data(), y, dy,
        position_grad_.mutable_cpu_data());
    // Positions sharing one beta element are contiguous: a row sum, added
    // in order (n > 0 here: a blob with no position returned above).
    const int n = bottom[1]->count(), per_beta = shape_.positions() / n;
    const Dtype* grad = position_grad_.cpu_data();
    Dtype* beta_diff = bottom[1]->mutable_cpu_diff();
    for (int r = 0; r < n; ++r) {
      beta_diff[r] = std::accumulate(grad + r * per_beta,
                                     grad + (r + 1) * per_beta, Dtype(0));
    }
  }
  if (propagate_down[0]) {
    caffe_temperature::layer_kernels::SoftmaxBackwardCPU(
        shape_, y, dy, Beta(bottom, false), bottom[0]->mutable_cpu_diff());
  }
}

#ifdef CPU_ONLY
STUB_GPU(TemperatureSoftmaxLayer);
#endif

INSTANTIATE_CLASS(TemperatureSoftmaxLayer);
REGISTER_LAYER_CLASS(TemperatureSoftmax);

}  // namespace caffe
