#include <gtest/gtest.h>

#include "caffe/common.hpp"
#include "test_util.hpp"

namespace caffe_temperature_test {

namespace {
bool gpu_available = false;
}  // namespace

bool GpuAvailable() { return gpu_available; }

}  // namespace caffe_temperature_test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Death tests fork; "threadsafe" re-executes the binary, which is safe with
  // glog and Caffe's singletons.
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  caffe::GlobalInit(&argc, &argv);
#ifndef CPU_ONLY
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    caffe::Caffe::SetDevice(0);
    caffe_temperature_test::gpu_available = true;
  }
#endif
  return RUN_ALL_TESTS();
}
