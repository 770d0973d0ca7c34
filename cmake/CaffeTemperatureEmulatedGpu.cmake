# gpu_kernels_emulated: the device code of cuda/ run on the CPU through
# HIP-CPU (header-only; -DCAFFE_TEMPERATURE_HIP_CPU_DIR=<folder holding its
# include/>) and compared with the CPU kernels. The files of cuda/ are not
# copied by hand: each build translates the real ones (hip_cpu_translate.cmake)
# into <build>/hip_cpu/. The test runs once per emulated architecture
# (gpu_kernels_emulated_sm_NN), with that architecture's launch rules and
# figures (tests/emulated/launch_rules.hpp): by default those with the least
# and the most shared memory per block, so that every dispatch decision that
# depends on the device is taken both ways. Without HIP-CPU the tests are
# reported as skipped.
set(CAFFE_TEMPERATURE_HIP_CPU_DIR "" CACHE PATH
    "HIP-CPU (the folder holding include/hip): runs cuda/ on the CPU in the tests gpu_kernels_emulated_sm_*")
set(CAFFE_TEMPERATURE_EMULATED_ARCHS 75 90 CACHE STRING
    "Architectures whose launch rules gpu_kernels_emulated runs (75 80 86 89 90)")

set(_skip_reason "")
if(NOT CAFFE_TEMPERATURE_HIP_CPU_DIR)
  set(_skip_reason "CAFFE_TEMPERATURE_HIP_CPU_DIR is not set")
elseif(NOT EXISTS ${CAFFE_TEMPERATURE_HIP_CPU_DIR}/include/hip/hip_runtime.h)
  message(FATAL_ERROR "CAFFE_TEMPERATURE_HIP_CPU_DIR=${CAFFE_TEMPERATURE_HIP_CPU_DIR} "
    "has no include/hip/hip_runtime.h")
elseif(CAFFE_TEMPERATURE_SANITIZE)
  # HIP-CPU's fibres have small stacks without guard pages, too small for ASan.
  set(_skip_reason "not in the sanitizer build")
endif()

if(_skip_reason)
  foreach(_arch ${CAFFE_TEMPERATURE_EMULATED_ARCHS})
    add_test(NAME gpu_kernels_emulated_sm_${_arch} COMMAND sh -c
      "echo 'gpu_kernels_emulated skipped: ${_skip_reason} (scripts/test.sh sets it from CAFFE_TEMPERATURE_HIP_CPU_DIR)'; exit 77")
    set_tests_properties(gpu_kernels_emulated_sm_${_arch} PROPERTIES
      SKIP_RETURN_CODE 77)
  endforeach()
  return()
endif()

find_package(TBB REQUIRED)
find_package(Threads REQUIRED)
find_package(glog REQUIRED)

set(_cuda_dir ${PROJECT_SOURCE_DIR}/cuda)
set(_out_dir ${CMAKE_BINARY_DIR}/hip_cpu)
file(GLOB _device_headers CONFIGURE_DEPENDS ${_cuda_dir}/*.cuh)
file(GLOB _device_sources CONFIGURE_DEPENDS ${_cuda_dir}/*_kernels.cu)
set(_translated_sources)
set(_translated_headers)
foreach(_file ${_device_headers} ${_device_sources})
  get_filename_component(_name ${_file} NAME)
  string(REGEX REPLACE "\\.cu$" ".cpp" _name ${_name})
  set(_out ${_out_dir}/${_name})
  add_custom_command(OUTPUT ${_out}
    COMMAND ${CMAKE_COMMAND} -DINPUT=${_file} -DOUTPUT=${_out}
            -P ${PROJECT_SOURCE_DIR}/cmake/hip_cpu_translate.cmake
    DEPENDS ${_file} ${PROJECT_SOURCE_DIR}/cmake/hip_cpu_translate.cmake
    COMMENT "HIP-CPU translation: cuda/${_name}")
  if(_name MATCHES "\\.cpp$")
    list(APPEND _translated_sources ${_out})
  else()
    list(APPEND _translated_headers ${_out})
  endif()
endforeach()
# Every translated source depends on every translated header: they include
# each other by name, from ${_out_dir}.
set_source_files_properties(${_translated_sources} PROPERTIES
  OBJECT_DEPENDS "${_translated_headers}")

add_executable(gpu_kernels_emulated
  ${CMAKE_CURRENT_SOURCE_DIR}/emulated/test_gpu_kernels_emulated.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/emulated/test_loss_kernels_emulated.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/emulated/test_traffic_emulated.cpp
  ${_translated_sources})
target_include_directories(gpu_kernels_emulated PRIVATE
  ${_out_dir} ${CMAKE_CURRENT_SOURCE_DIR}/emulated)
target_include_directories(gpu_kernels_emulated SYSTEM PRIVATE
  ${CAFFE_TEMPERATURE_HIP_CPU_DIR}/include)
target_compile_options(gpu_kernels_emulated PRIVATE
  -include ${CMAKE_CURRENT_SOURCE_DIR}/emulated/cuda_on_hip_cpu.hpp
  # CUDA's `#pragma unroll`, which GCC does not know.
  -Wno-unknown-pragmas)
set_target_properties(gpu_kernels_emulated PROPERTIES CXX_STANDARD 17)
target_link_libraries(gpu_kernels_emulated PRIVATE caffe_temperature_kernels
  GTest::gtest GTest::gtest_main TBB::tbb Threads::Threads glog::glog)
foreach(_arch ${CAFFE_TEMPERATURE_EMULATED_ARCHS})
  add_test(NAME gpu_kernels_emulated_sm_${_arch} COMMAND gpu_kernels_emulated)
  set_tests_properties(gpu_kernels_emulated_sm_${_arch} PROPERTIES TIMEOUT 600
    ENVIRONMENT CAFFE_TEMPERATURE_EMULATED_ARCH=${_arch})
endforeach()
