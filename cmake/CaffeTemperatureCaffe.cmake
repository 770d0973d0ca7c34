# Caffe's exported targets name Boost's imported targets (Boost::python too,
# when pycaffe was built) without finding Boost themselves.
macro(caffe_temperature_find_caffe_boost)
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  find_package(Boost REQUIRED COMPONENTS system thread filesystem
    OPTIONAL_COMPONENTS python${Python3_VERSION_MAJOR}${Python3_VERSION_MINOR})
  set(_boost_python Boost::python${Python3_VERSION_MAJOR}${Python3_VERSION_MINOR})
  if(TARGET ${_boost_python} AND NOT TARGET Boost::python)
    add_library(Boost::python INTERFACE IMPORTED)
    target_link_libraries(Boost::python INTERFACE ${_boost_python})
  endif()
endmacro()

# Facts about the Caffe that find_package(Caffe) found, beyond what its
# CaffeConfig exports.
function(caffe_temperature_find_caffe_extras)
  # A build tree's CaffeConfig exports include/ but not the directory of the
  # generated caffe.pb.h (<build>/include); an install has both in one place.
  find_path(CAFFE_PROTO_INCLUDE_DIR caffe/proto/caffe.pb.h
    HINTS ${Caffe_DIR}/include ${Caffe_DIR}/../../include
    NO_DEFAULT_PATH)
  if(NOT CAFFE_PROTO_INCLUDE_DIR)
    message(FATAL_ERROR "caffe/proto/caffe.pb.h not found under Caffe_DIR=${Caffe_DIR}: "
      "point Caffe_DIR at an installed Caffe (<prefix>/share/Caffe) or a built Caffe build tree")
  endif()
  set(CAFFE_EXTRA_INCLUDE_DIRS ${CAFFE_PROTO_INCLUDE_DIR} PARENT_SCOPE)

  # The stock command-line tool and pycaffe, for the wrapper and the tests.
  find_program(CAFFE_EXECUTABLE caffe caffe.bin
    HINTS ${Caffe_DIR}/../../bin ${Caffe_DIR}/tools NO_DEFAULT_PATH)
  find_path(PYCAFFE_DIR caffe/pycaffe.py
    HINTS ${Caffe_DIR}/../../python ${Caffe_DIR}/python NO_DEFAULT_PATH)
  if(Caffe_CPU_ONLY)
    set(Caffe_CPU_ONLY_JSON true PARENT_SCOPE)
  else()
    set(Caffe_CPU_ONLY_JSON false PARENT_SCOPE)
  endif()
  message(STATUS "caffe_temperature: Caffe ${Caffe_DIR}, caffe tool ${CAFFE_EXECUTABLE}, "
    "pycaffe ${PYCAFFE_DIR}")
endfunction()
