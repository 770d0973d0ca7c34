// The CPU kernels split rows and strips of positions between OpenMP threads
// (docs/performance.md, "Threads"); each row or strip is computed from its own
// data and the loss sums are combined in a fixed order, so every output must
// be the same bits with 1 and with 2 threads.
#include <omp.h>

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "caffe/blob.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/parallel.hpp"
#include "caffe_temperature/softmax_with_distillation_loss_layer.hpp"
#include "caffe_temperature/softmax_with_infogain_loss_layer.hpp"
#include "caffe_temperature/temperature_softmax_layer.hpp"
#include "test_util.hpp"

namespace caffe_temperature_test {

using caffe::Blob;
using caffe::FillerParameter;
using caffe::Layer;
using caffe::LayerParameter;
using std::vector;

const int kIgnored = -1;

// Softmax axis 1 of each: inner = 1 (one row per position), short rows
// (tiles of 256 rows, which 2 threads split mid-tile) and inner > 1 (strips
// of positions), all past kParallelMinElements.
const vector<vector<int> > kShapes = {
    {160, 1000}, {3300, 21}, {2, 7, 100, 100}};

template <typename Dtype>
class ThreadDeterminismTest : public ::testing::Test {
 protected:
  void TearDown() override { omp_set_num_threads(threads_before_); }

  // Fresh blobs for `shape`: x and a second logit blob y ~ N(0, 3^2), labels
  // with every seventh position ignored, H (C x C) uniform in [0, 2), beta
  // (one per position) in [0.5, 2) and a random diff for a non-loss top.
  void Prepare(const vector<int>& shape) {
    caffe::Caffe::set_random_seed(1701);
    ASSERT_GE(Blob<Dtype>(shape).count(),
              caffe_temperature::kParallelMinElements);
    const int C = shape[1];
    vector<int> position_shape = shape;
    position_shape.erase(position_shape.begin() + 1);
    FillerParameter gaussian;
    gaussian.set_std(3);
    for (Blob<Dtype>* blob : {&x_, &y_, &top_diff_}) {
      blob->Reshape(shape);
      caffe::GaussianFiller<Dtype>(gaussian).Fill(blob);
    }
    label_.Reshape(position_shape);
    for (int i = 0; i < label_.count(); ++i) {
      label_.mutable_cpu_data()[i] = i % 7 == 3
          ? kIgnored : static_cast<int>(caffe::caffe_rng_rand() % C);
    }
    H_.Reshape(vector<int>{C, C});
    caffe::caffe_rng_uniform<Dtype>(H_.count(), 0, 2, H_.mutable_cpu_data());
    beta_.Reshape(position_shape);
    caffe::caffe_rng_uniform<Dtype>(beta_.count(), 0.5, 2,
                                    beta_.mutable_cpu_data());
  }

  // Forward and backward through a fresh layer of `param` with `threads`
  // threads; returns every top value and every bottom diff, in order.
  vector<Dtype> Run(const LayerParameter& param, int threads) {
    omp_set_num_threads(threads);
    vector<Blob<Dtype>*> bottom, top{&top_};
    vector<bool> propagate_down;
    if (param.type() == "TemperatureSoftmax") {
      bottom = {&x_, &beta_};
      propagate_down = {true, true};
    } else if (param.type() == "SoftmaxWithInfogainLoss") {
      bottom = {&x_, &label_, &H_};
      propagate_down = {true, false, false};
    } else {
      bottom = {&x_, &y_, &label_};
      propagate_down = {true, false, false};
    }
    layer_ = caffe::LayerRegistry<Dtype>::CreateLayer(param);
    layer_->SetUp(bottom, top);
    layer_->Forward(bottom, top);
    if (param.type() == "TemperatureSoftmax") {
      caffe::caffe_copy(top_.count(), top_diff_.cpu_data(),
                        top_.mutable_cpu_diff());
    }
    layer_->Backward(top, propagate_down, bottom);
    vector<Dtype> out(top_.cpu_data(), top_.cpu_data() + top_.count());
    for (int i = 0; i < bottom.size(); ++i) {
      if (!propagate_down[i]) continue;
      out.insert(out.end(), bottom[i]->cpu_diff(),
                 bottom[i]->cpu_diff() + bottom[i]->count());
    }
    return out;
  }

  void ExpectSameBitsWithOneAndTwoThreads(const LayerParameter& param) {
    for (const vector<int>& shape : kShapes) {
      Prepare(shape);
      const vector<Dtype> one = Run(param, 1);
      const vector<Dtype> two = Run(param, 2);
      ASSERT_EQ(omp_get_max_threads(), 2);
      ASSERT_EQ(one.size(), two.size());
      EXPECT_EQ(0, std::memcmp(one.data(), two.data(),
                               one.size() * sizeof(Dtype)))
          << param.type() << " differs between 1 and 2 threads for shape ("
          << shape[0] << ", " << shape[1] << ", ...)";
    }
  }

  static LayerParameter Param(const char* type) {
    LayerParameter param;
    param.set_name("layer");
    param.set_type(type);
    param.mutable_loss_param()->set_ignore_label(kIgnored);
    param.mutable_scale_param()->mutable_filler()->set_type("constant");
    param.mutable_scale_param()->mutable_filler()->set_value(0.5);
    return param;
  }

  const int threads_before_ = omp_get_max_threads();
  Blob<Dtype> x_, y_, label_, H_, beta_, top_, top_diff_;
  caffe::shared_ptr<Layer<Dtype> > layer_;
};

typedef ::testing::Types<float, double> Dtypes;
TYPED_TEST_SUITE(ThreadDeterminismTest, Dtypes);

TYPED_TEST(ThreadDeterminismTest, TemperatureSoftmax) {
  LayerParameter param = this->Param("TemperatureSoftmax");
  param.clear_loss_param();
  param.clear_scale_param();  // beta is bottom[1], one per position
  this->ExpectSameBitsWithOneAndTwoThreads(param);
}

TYPED_TEST(ThreadDeterminismTest, SoftmaxWithInfogainLoss) {
  LayerParameter param = this->Param("SoftmaxWithInfogainLoss");
  param.clear_scale_param();
  this->ExpectSameBitsWithOneAndTwoThreads(param);
}

TYPED_TEST(ThreadDeterminismTest, SoftmaxWithDistillationLoss) {
  this->ExpectSameBitsWithOneAndTwoThreads(
      this->Param("SoftmaxWithDistillationLoss"));
}

}  // namespace caffe_temperature_test
