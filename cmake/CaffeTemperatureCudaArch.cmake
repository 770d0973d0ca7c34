# The CUDA architectures of the plugin's kernels and of the nvcc compile
# check, in CMake's CUDA_ARCHITECTURES syntax (NN: SASS and PTX, NN-real: SASS,
# NN-virtual: PTX; or native, all, all-major), into
# CAFFE_TEMPERATURE_CUDA_ARCHITECTURES:
# 1. -DCAFFE_TEMPERATURE_CUDA_ARCH=<that syntax> where given;
# 2. else those the Caffe at Caffe_DIR was built for, where it says: the
#    CUDA_ARCH_BIN / CUDA_ARCH_PTX of its CMake cache (a build tree built with
#    CUDA_ARCH_NAME=Manual) or the CUDA_ARCH of its Makefile.config (a
#    Makefile build), kept to those the installed nvcc compiles;
# 3. else every real architecture the installed nvcc compiles from sm_75 up,
#    and PTX of the newest, so that a GPU newer than nvcc JIT-compiles it.
set(CAFFE_TEMPERATURE_CUDA_ARCH "" CACHE STRING
    "CUDA architectures of the kernels and the nvcc compile check (empty: Caffe's, else every one nvcc has from sm_75)")

# The real architectures `nvcc --list-gpu-code` names, as numbers, ascending.
function(_ct_nvcc_real_archs nvcc out)
  execute_process(COMMAND ${nvcc} --list-gpu-code OUTPUT_VARIABLE _codes
                  RESULT_VARIABLE _status ERROR_QUIET)
  if(NOT _status EQUAL 0)
    message(FATAL_ERROR "${nvcc} --list-gpu-code failed: set CAFFE_TEMPERATURE_CUDA_ARCH")
  endif()
  string(REGEX MATCHALL "sm_[0-9]+[\n]" _codes "${_codes}\n")
  set(_archs)
  foreach(_code ${_codes})
    string(REGEX REPLACE "sm_([0-9]+)[\n]" "\\1" _arch "${_code}")
    list(APPEND _archs ${_arch})
  endforeach()
  list(SORT _archs COMPARE NATURAL)
  set(${out} ${_archs} PARENT_SCOPE)
endfunction()

# Caffe's own list, from a build tree's CMake cache or a Makefile.config next
# to Caffe_DIR; "" where neither says.
function(_ct_caffe_archs out)
  set(_archs)
  set(_cache ${Caffe_DIR}/CMakeCache.txt)
  set(_makefile_config)
  foreach(_dir ${Caffe_DIR} ${Caffe_DIR}/.. ${Caffe_DIR}/../..)
    if(NOT _makefile_config AND EXISTS ${_dir}/Makefile.config)
      set(_makefile_config ${_dir}/Makefile.config)
    endif()
  endforeach()
  if(EXISTS ${_cache})
    file(STRINGS ${_cache} _bin REGEX "^CUDA_ARCH_BIN:")
    file(STRINGS ${_cache} _ptx REGEX "^CUDA_ARCH_PTX:")
    string(REGEX REPLACE "^[^=]*=" "" _bin "${_bin}")
    string(REGEX REPLACE "^[^=]*=" "" _ptx "${_ptx}")
    # "60 61(60) 7.0": the real architectures, dots dropped.
    string(REGEX REPLACE "\\([0-9.]*\\)" "" _bin "${_bin}")
    string(REPLACE "." "" _bin "${_bin}")
    string(REPLACE "." "" _ptx "${_ptx}")
    separate_arguments(_bin UNIX_COMMAND "${_bin}")
    separate_arguments(_ptx UNIX_COMMAND "${_ptx}")
    foreach(_arch ${_bin})
      list(APPEND _archs ${_arch}-real)
    endforeach()
    foreach(_arch ${_ptx})
      list(APPEND _archs ${_arch}-virtual)
    endforeach()
  elseif(_makefile_config)
    # CUDA_ARCH := -gencode arch=compute_XX,code=sm_XX \ ... (continued lines)
    file(READ ${_makefile_config} _text)
    string(REGEX REPLACE "\\\\\n" " " _text "${_text}")
    string(REGEX MATCH "\n[ \t]*CUDA_ARCH[ \t]*:?=[^\n]*" _line "\n${_text}")
    string(REGEX MATCHALL "code=(sm|compute)_[0-9]+" _codes "${_line}")
    foreach(_code ${_codes})
      string(REGEX REPLACE "code=(sm|compute)_([0-9]+)" "\\2" _arch "${_code}")
      if(_code MATCHES "code=sm_")
        list(APPEND _archs ${_arch}-real)
      else()
        list(APPEND _archs ${_arch}-virtual)
      endif()
    endforeach()
  endif()
  list(REMOVE_DUPLICATES _archs)
  set(${out} ${_archs} PARENT_SCOPE)
endfunction()

function(caffe_temperature_cuda_architectures nvcc)
  if(CAFFE_TEMPERATURE_CUDA_ARCH)
    set(CAFFE_TEMPERATURE_CUDA_ARCHITECTURES ${CAFFE_TEMPERATURE_CUDA_ARCH}
        PARENT_SCOPE)
    message(STATUS "caffe_temperature: CUDA architectures ${CAFFE_TEMPERATURE_CUDA_ARCH} (CAFFE_TEMPERATURE_CUDA_ARCH)")
    return()
  endif()
  _ct_nvcc_real_archs(${nvcc} _known)
  _ct_caffe_archs(_caffe)
  set(_archs)
  foreach(_entry ${_caffe})
    string(REGEX REPLACE "-.*" "" _arch ${_entry})
    if(_arch IN_LIST _known)
      list(APPEND _archs ${_entry})
    else()
      message(WARNING "caffe_temperature: Caffe was built for sm_${_arch}, "
              "which ${nvcc} does not compile; left out")
    endif()
  endforeach()
  if(_archs)
    set(_from "the Caffe at ${Caffe_DIR}")
  else()
    set(_from "every one ${nvcc} compiles from sm_75, PTX for the newest")
    foreach(_arch ${_known})
      if(_arch GREATER_EQUAL 75)
        list(APPEND _archs ${_arch}-real)
      endif()
    endforeach()
    if(NOT _archs)
      message(FATAL_ERROR "${nvcc} compiles no architecture from sm_75 up")
    endif()
    list(POP_BACK _archs _newest)
    string(REPLACE "-real" "" _newest ${_newest})
    list(APPEND _archs ${_newest})
  endif()
  message(STATUS "caffe_temperature: CUDA architectures ${_archs} (${_from})")
  set(CAFFE_TEMPERATURE_CUDA_ARCHITECTURES ${_archs} PARENT_SCOPE)
endfunction()

# nvcc's flags for a list in that syntax, one -gencode (or -arch) per entry.
function(caffe_temperature_nvcc_arch_flags out)
  set(_flags)
  foreach(_entry ${ARGN})
    if(_entry MATCHES "^(native|all|all-major)$")
      list(APPEND _flags -arch=${_entry})
    elseif(_entry MATCHES "^([0-9]+[af]?)-real$")
      list(APPEND _flags -gencode=arch=compute_${CMAKE_MATCH_1},code=sm_${CMAKE_MATCH_1})
    elseif(_entry MATCHES "^([0-9]+[af]?)-virtual$")
      list(APPEND _flags -gencode=arch=compute_${CMAKE_MATCH_1},code=compute_${CMAKE_MATCH_1})
    elseif(_entry MATCHES "^([0-9]+[af]?)$")
      list(APPEND _flags
        -gencode=arch=compute_${CMAKE_MATCH_1},code=sm_${CMAKE_MATCH_1}
        -gencode=arch=compute_${CMAKE_MATCH_1},code=compute_${CMAKE_MATCH_1})
    else()
      message(FATAL_ERROR "CAFFE_TEMPERATURE_CUDA_ARCH: '${_entry}' is not NN, "
              "NN-real, NN-virtual, native, all or all-major")
    endif()
  endforeach()
  set(${out} ${_flags} PARENT_SCOPE)
endfunction()
