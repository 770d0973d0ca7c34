# A Caffe built with its own Makefile (Caffe_ROOT=<source tree>) or the folder
# `make distribute` wrote (Caffe_ROOT=<distribute>): neither has a
# CaffeConfig.cmake, so the imported target `caffe` is made here, with the
# compile definitions that Caffe was built with. Used by CaffeTemperatureCaffe.cmake.

# The compile definitions of Caffe's Makefile that its headers (or the
# libraries it links) depend on, and the library whose presence among
# libcaffe's dependencies shows each one in a built Caffe.
set(CAFFE_TEMPERATURE_CAFFE_DEFINITIONS
  CPU_ONLY USE_CUDNN USE_NCCL USE_MKL USE_OPENCV USE_LEVELDB USE_LMDB USE_HDF5)
set(_caffe_marker_USE_CUDNN libcudnn)
set(_caffe_marker_USE_NCCL libnccl)
set(_caffe_marker_USE_MKL libmkl)
set(_caffe_marker_USE_OPENCV libopencv_core)
set(_caffe_marker_USE_LEVELDB libleveldb)
set(_caffe_marker_USE_LMDB liblmdb)
set(_caffe_marker_USE_HDF5 libhdf5)

# The definitions a built libcaffe shows through the shared libraries it needs
# (CPU_ONLY: no cuBLAS, which every CUDA build of Caffe links).
function(caffe_temperature_library_definitions library out_var)
  find_program(CAFFE_TEMPERATURE_OBJDUMP NAMES objdump ${CMAKE_OBJDUMP})
  execute_process(COMMAND ${CAFFE_TEMPERATURE_OBJDUMP} -p ${library}
    OUTPUT_VARIABLE _dump RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "cannot read the dependencies of ${library}: ${_err}")
  endif()
  string(REGEX MATCHALL "NEEDED +[^\n]+" _needed "${_dump}")
  set(_definitions)
  if(NOT _needed MATCHES "libcublas")
    list(APPEND _definitions CPU_ONLY)
  endif()
  foreach(_definition ${CAFFE_TEMPERATURE_CAFFE_DEFINITIONS})
    if(DEFINED _caffe_marker_${_definition} AND _needed MATCHES "NEEDED +${_caffe_marker_${_definition}}")
      list(APPEND _definitions ${_definition})
    endif()
  endforeach()
  set(${out_var} ${_definitions} PARENT_SCOPE)
endfunction()

# What Caffe's Makefile derives from Makefile.config, asked of make itself: the
# built library, the tool, pycaffe's extension, the definitions and the
# include and library folders (relative ones made absolute).
function(caffe_temperature_makefile_variables root prefix)
  find_program(CAFFE_TEMPERATURE_MAKE NAMES make gmake REQUIRED)
  # Without CMake's CXX (/usr/bin/c++), which Caffe's Makefile refuses: it
  # wants a name containing g++ or clang++ and defaults to g++.
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env --unset=CXX
            ${CAFFE_TEMPERATURE_MAKE} --no-print-directory -C ${root} -f Makefile
            -f ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/caffe_makefile_variables.mk caffe-temperature-variables
    OUTPUT_VARIABLE _out ERROR_VARIABLE _err RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "Caffe_ROOT=${root}: its Makefile cannot be read with its Makefile.config: ${_err}")
  endif()
  foreach(_name LIBRARY TOOL PYCAFFE_SO COMMON_FLAGS INCLUDE_DIRS LIBRARY_DIRS)
    string(REGEX MATCH "CT_${_name}=([^\n]*)" _line "${_out}")
    separate_arguments(_values UNIX_COMMAND "${CMAKE_MATCH_1}")
    set(_absolute)
    foreach(_value ${_values})
      if(NOT _name STREQUAL "COMMON_FLAGS")
        get_filename_component(_value ${_value} ABSOLUTE BASE_DIR ${root})
      endif()
      list(APPEND _absolute ${_value})
    endforeach()
    set(${prefix}_${_name} ${_absolute} PARENT_SCOPE)
  endforeach()
endfunction()

# The definitions that Caffe's Makefile passed to the compiler.
function(caffe_temperature_makefile_definitions common_flags out_var)
  set(_definitions)
  foreach(_definition ${CAFFE_TEMPERATURE_CAFFE_DEFINITIONS})
    if("-D${_definition}" IN_LIST common_flags)
      list(APPEND _definitions ${_definition})
    endif()
  endforeach()
  set(${out_var} ${_definitions} PARENT_SCOPE)
endfunction()

# glog, gflags, protobuf, Boost.Filesystem (caffe/util/io.hpp) and BLAS's cblas.h (and CUDA's headers for a GPU
# Caffe): what Caffe's headers include and the plugin calls, which a Makefile
# Caffe does not record for its users. `hints`: the folders its Makefile used.
function(caffe_temperature_make_caffe_dependencies definitions include_hints library_hints
         includes_var libraries_var)
  set(_includes)
  set(_libraries)
  foreach(_header glog/logging.h gflags/gflags.h google/protobuf/message.h)
    string(MAKE_C_IDENTIFIER "CAFFE_TEMPERATURE_${_header}_DIR" _var)
    find_path(${_var} ${_header} HINTS ${include_hints})
    list(APPEND _includes ${${_var}})
  endforeach()
  if(NOT USE_MKL IN_LIST definitions)
    find_path(CAFFE_TEMPERATURE_CBLAS_DIR cblas.h HINTS ${include_hints}
      PATH_SUFFIXES openblas openblas-pthread)
    list(APPEND _includes ${CAFFE_TEMPERATURE_CBLAS_DIR})
  endif()
  foreach(_library glog gflags protobuf)
    string(TOUPPER "CAFFE_TEMPERATURE_${_library}_LIBRARY" _var)
    find_library(${_var} ${_library} HINTS ${library_hints})
    list(APPEND _libraries ${${_var}})
  endforeach()
  if(NOT CPU_ONLY IN_LIST definitions)
    find_package(CUDAToolkit REQUIRED)
    list(APPEND _includes ${CUDAToolkit_INCLUDE_DIRS})
  endif()
  foreach(_found ${_includes} ${_libraries})
    if(NOT _found OR _found MATCHES "-NOTFOUND$")
      message(FATAL_ERROR "A header or library that Caffe's headers need is missing: ${_found}")
    endif()
  endforeach()
  set(${includes_var} ${_includes} PARENT_SCOPE)
  set(${libraries_var} ${_libraries} Boost::system Boost::filesystem PARENT_SCOPE)
endfunction()

# The Caffe at <root> (kind MAKE_TREE or MAKE_DISTRIBUTE): the imported target
# `caffe` and the variables that CaffeTemperatureCaffe.cmake documents.
macro(caffe_temperature_find_make_caffe root kind)
  if(${kind} STREQUAL "MAKE_TREE")
    caffe_temperature_makefile_variables(${root} _make)
    if(NOT EXISTS "${_make_LIBRARY}")
      message(FATAL_ERROR "Caffe_ROOT=${root} is a Caffe source tree configured for make, but its "
        "library ${_make_LIBRARY} is not there: build it first (make all pycaffe)")
    endif()
    set(CAFFE_LIBRARY ${_make_LIBRARY})
    # Not src/: Caffe's own sources, with a bundled gtest 1.7 that would shadow the system's.
    set(_caffe_includes ${_make_INCLUDE_DIRS})
    list(REMOVE_ITEM _caffe_includes ${root}/src)
    caffe_temperature_makefile_definitions("${_make_COMMON_FLAGS}" _caffe_definitions)
    caffe_temperature_library_definitions(${CAFFE_LIBRARY} _caffe_built_with)
    if(NOT _caffe_definitions STREQUAL _caffe_built_with)
      message(FATAL_ERROR "Caffe_ROOT=${root}: its Makefile.config gives the definitions "
        "\"${_caffe_definitions}\", but ${CAFFE_LIBRARY} was built with \"${_caffe_built_with}\" "
        "(read from the libraries it needs). Class layouts differ between the two (CPU_ONLY above "
        "all), so a plugin compiled with the first would crash in the second: rebuild Caffe "
        "(make clean; make all pycaffe) or restore the Makefile.config it was built with.")
    endif()
    set(CAFFE_PROTO_FILE ${root}/src/caffe/proto/caffe.proto)
    set(CAFFE_TEMPERATURE_FOUND_TOOL ${_make_TOOL})
    set(CAFFE_TEMPERATURE_FOUND_PYCAFFE ${root}/python)
    set(CAFFE_KIND "built with make (${root})")
  else()
    file(REAL_PATH ${root}/lib/libcaffe.so CAFFE_LIBRARY)
    set(_caffe_includes ${root}/include)
    set(_make_INCLUDE_DIRS)
    set(_make_LIBRARY_DIRS)
    caffe_temperature_library_definitions(${CAFFE_LIBRARY} _caffe_definitions)
    set(CAFFE_PROTO_FILE ${root}/proto/caffe.proto)
    set(CAFFE_TEMPERATURE_FOUND_TOOL ${root}/bin/caffe.bin)
    set(CAFFE_TEMPERATURE_FOUND_PYCAFFE ${root}/python)
    set(CAFFE_PYCAFFE_NEEDS_LIBRARY_PATH ON)
    set(CAFFE_KIND "make distribute folder (${root})")
  endif()
  caffe_temperature_make_caffe_dependencies("${_caffe_definitions}" "${_make_INCLUDE_DIRS}"
    "${_make_LIBRARY_DIRS}" _caffe_dependency_includes _caffe_dependency_libraries)
  get_filename_component(_caffe_soname ${CAFFE_LIBRARY} NAME)
  add_library(caffe SHARED IMPORTED)
  set_target_properties(caffe PROPERTIES
    IMPORTED_LOCATION ${CAFFE_LIBRARY}
    IMPORTED_SONAME ${_caffe_soname}
    INTERFACE_INCLUDE_DIRECTORIES "${_caffe_includes};${_caffe_dependency_includes}"
    INTERFACE_COMPILE_DEFINITIONS "${_caffe_definitions}"
    INTERFACE_LINK_LIBRARIES "${_caffe_dependency_libraries}")
  find_path(CAFFE_PROTO_INCLUDE_DIR caffe/proto/caffe.pb.h HINTS ${_caffe_includes} NO_DEFAULT_PATH)
  if(NOT EXISTS ${CAFFE_PROTO_FILE})
    set(CAFFE_PROTO_FILE "")
  endif()
  if(EXISTS ${CAFFE_TEMPERATURE_FOUND_TOOL})
    set(CAFFE_EXECUTABLE ${CAFFE_TEMPERATURE_FOUND_TOOL} CACHE FILEPATH "The caffe tool")
  endif()
  # pycaffe's extension is built by `make pycaffe`; python/caffe/ is there without it.
  if(EXISTS ${CAFFE_TEMPERATURE_FOUND_PYCAFFE}/caffe/_caffe.so)
    set(PYCAFFE_DIR ${CAFFE_TEMPERATURE_FOUND_PYCAFFE} CACHE PATH "pycaffe's folder")
  endif()
  if(CPU_ONLY IN_LIST _caffe_definitions)
    set(Caffe_CPU_ONLY ON)
  else()
    set(Caffe_CPU_ONLY OFF)
  endif()
endmacro()
