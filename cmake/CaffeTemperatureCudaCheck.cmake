# Every file in cuda/ is compiled by nvcc against Caffe's headers with the GPU
# code paths on (no CPU_ONLY), even when the Caffe at hand is CPU-only, so that
# kernels are checked on machines without a GPU: the files with device code
# for every architecture of CAFFE_TEMPERATURE_CUDA_ARCHITECTURES
# (CaffeTemperatureCudaArch.cmake), the others for the first one, with
# every warning an error, ptxas's spill warning (--warn-on-spills) included,
# so that a kernel that spills registers on any of them fails. Built by the
# target `cuda_compile_check` and run as the CTest test of the same name.
find_program(NVCC_EXECUTABLE nvcc
  HINTS ENV CUDA_HOME ENV CUDA_PATH /usr/local/cuda PATH_SUFFIXES bin)

if(NOT NVCC_EXECUTABLE)
  message(STATUS "caffe_temperature: nvcc not found, no CUDA compile check")
  return()
endif()

include(CaffeTemperatureCudaArch)
if(NOT DEFINED CAFFE_TEMPERATURE_CUDA_ARCHITECTURES)
  caffe_temperature_cuda_architectures(${NVCC_EXECUTABLE})
endif()
caffe_temperature_nvcc_arch_flags(_arch_flags ${CAFFE_TEMPERATURE_CUDA_ARCHITECTURES})

get_filename_component(_cuda_root ${NVCC_EXECUTABLE} DIRECTORY)
get_filename_component(_cuda_root ${_cuda_root} DIRECTORY)
set(_check_includes
  ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_SOURCE_DIR}/cuda
  ${CAFFE_EXTRA_INCLUDE_DIRS} ${_cuda_root}/include)
set(_check_objects)
list(GET _arch_flags 0 _first_arch_flag)
foreach(_cu ${PLUGIN_CUDA_SOURCES})
  get_filename_component(_name ${_cu} NAME_WE)
  # A file without device code of its own (a layer's .cu passing its blobs
  # to the kernels' entry points) is checked as well by one architecture.
  file(READ ${_cu} _text)
  if(_text MATCHES "__global__|__device__")
    set(_file_arch_flags ${_arch_flags})
  else()
    set(_file_arch_flags ${_first_arch_flag})
  endif()
  set(_obj ${CMAKE_BINARY_DIR}/cuda_check/${_name}.o)
  add_custom_command(OUTPUT ${_obj}
    COMMAND ${NVCC_EXECUTABLE} -std=c++17 -O2 ${_file_arch_flags}
            -Xcompiler=-fPIC -Werror=all-warnings
            -Xptxas=--warn-on-spills
            "-I$<JOIN:${_check_includes},;-I>"
            "-I$<JOIN:$<TARGET_PROPERTY:caffe,INTERFACE_INCLUDE_DIRECTORIES>,;-I>"
            -c ${_cu} -o ${_obj}
    DEPENDS ${_cu}
    IMPLICIT_DEPENDS CXX ${_cu}
    COMMAND_EXPAND_LISTS
    COMMENT "nvcc compile check: ${_name}.cu (${_file_arch_flags})"
    VERBATIM)
  list(APPEND _check_objects ${_obj})
endforeach()
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/cuda_check)
add_custom_target(cuda_compile_check DEPENDS ${_check_objects})
set(CAFFE_TEMPERATURE_HAVE_CUDA_CHECK ON)
