#ifndef CAFFE_TEMPERATURE_TEST_UTIL_HPP_
#define CAFFE_TEMPERATURE_TEST_UTIL_HPP_

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe_temperature/softmax_kernels.hpp"

namespace caffe_temperature_test {

using caffe::Caffe;

template <typename TypeParam>
struct CPUDevice {
  typedef TypeParam Dtype;
  static const Caffe::Brew device = Caffe::CPU;
};

template <typename TypeParam>
struct GPUDevice {
  typedef TypeParam Dtype;
  static const Caffe::Brew device = Caffe::GPU;
};

// True when the plugin was built with CUDA and a device is present (set by
// test_main.cpp). GPU cases skip, and say so, otherwise.
bool GpuAvailable();

// Typed tests over these run every case on float and double, on the CPU and,
// in a CUDA build, on the GPU.
template <typename TypeParam>
class MultiDeviceTest : public ::testing::Test {
 public:
  typedef typename TypeParam::Dtype Dtype;

 protected:
  void SetUp() override {
    if (TypeParam::device == Caffe::GPU && !GpuAvailable()) {
      GTEST_SKIP() << "no CUDA device";
    }
    Caffe::set_mode(TypeParam::device);
  }
};

#ifdef CPU_ONLY
typedef ::testing::Types<CPUDevice<float>, CPUDevice<double> >
    TestDtypesAndDevices;
#else
typedef ::testing::Types<CPUDevice<float>, CPUDevice<double>,
                         GPUDevice<float>, GPUDevice<double> >
    TestDtypesAndDevices;
#endif

// The kernels' view of a blob softmaxed over `axis`.
template <typename Dtype>
caffe_temperature::SoftmaxShape ShapeOf(const caffe::Blob<Dtype>& blob,
                                        int axis) {
  const int a = blob.CanonicalAxisIndex(axis);
  const caffe_temperature::SoftmaxShape shape = {
      blob.count(0, a), blob.shape(a), blob.count(a + 1)};
  return shape;
}

// n values in double, for the plain kernels of reference_kernels.hpp, which
// the tests run in double on the layers' (rounded) inputs.
template <typename Dtype>
std::vector<double> InDouble(const Dtype* values, int n) {
  return std::vector<double>(values, values + n);
}

// What a loss is divided by (Caffe's LossLayer::GetNormalizer): never below
// 1, so that a batch without a valid position gives 0, not NaN.
inline double ReferenceNormalizer(caffe::LossParameter_NormalizationMode mode,
                                  const caffe_temperature::SoftmaxShape& shape,
                                  int valid) {
  double norm = 1;
  switch (mode) {
    case caffe::LossParameter_NormalizationMode_FULL:
      norm = shape.positions();
      break;
    case caffe::LossParameter_NormalizationMode_VALID:
      norm = valid;
      break;
    case caffe::LossParameter_NormalizationMode_BATCH_SIZE:
      norm = shape.outer;
      break;
    default:
      break;
  }
  return std::max(norm, 1.0);
}

}  // namespace caffe_temperature_test

#endif  // CAFFE_TEMPERATURE_TEST_UTIL_HPP_
