#ifndef CAFFE_TEMPERATURE_TEST_UTIL_HPP_
#define CAFFE_TEMPERATURE_TEST_UTIL_HPP_

#include <gtest/gtest.h>

#include "caffe/common.hpp"

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

}  // namespace caffe_temperature_test

#endif  // CAFFE_TEMPERATURE_TEST_UTIL_HPP_
