# Which Caffe the plugin builds against (docs/install.md, "Which Caffe").
#
#   -DCaffe_ROOT=<folder> (or the environment variable Caffe_ROOT): a CMake
#       install prefix or build tree, a source tree built with `make`, or the
#       folder `make distribute` wrote;
#   -DCaffe_DIR=<folder holding CaffeConfig.cmake> (or the environment variable).
#
# A Caffe that was named is the one used, or the configure stops: find_package
# alone would quietly take another one from CMake's user package registry or
# from a <prefix>/share/Caffe beside a bin/ on PATH. Only when none is named is
# one searched for. Every way in ends with the imported target `caffe`
# (include directories and Caffe's compile definitions) and these variables:
#   CAFFE_KIND               what the Caffe is, for the messages
#   CAFFE_LIBRARY            the libcaffe the plugin links
#   CAFFE_PROTO_INCLUDE_DIR  the folder holding caffe/proto/caffe.pb.h
#   CAFFE_PROTO_FILE         its caffe.proto ("" when the Caffe has none)
#   CAFFE_EXECUTABLE         the caffe tool ("" when there is none)
#   PYCAFFE_DIR              the folder holding pycaffe's caffe/ ("" when none)
#   Caffe_CPU_ONLY           whether Caffe was built without CUDA
#   CAFFE_PYCAFFE_NEEDS_LIBRARY_PATH  pycaffe finds libcaffe through LD_LIBRARY_PATH only
#   Caffe_LIBRARIES          caffe
include(CaffeTemperatureMakeCaffe)

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

# What kind of Caffe <root> holds: CMAKE (with the folder of its CaffeConfig.cmake
# in <config_dir_var>), MAKE_TREE, MAKE_DISTRIBUTE, or "" with what was looked
# for in <looked_var>.
function(caffe_temperature_caffe_kind root kind_var config_dir_var looked_var)
  set(_configs ${root}/CaffeConfig.cmake ${root}/share/Caffe/CaffeConfig.cmake
    ${root}/build/CaffeConfig.cmake)
  foreach(_config ${_configs})
    if(EXISTS ${_config})
      get_filename_component(_dir ${_config} DIRECTORY)
      set(${kind_var} CMAKE PARENT_SCOPE)
      set(${config_dir_var} ${_dir} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  if(EXISTS ${root}/Makefile.config AND EXISTS ${root}/Makefile)
    set(${kind_var} MAKE_TREE PARENT_SCOPE)
    return()
  endif()
  if(EXISTS ${root}/include/caffe/proto/caffe.pb.h AND EXISTS ${root}/lib/libcaffe.so)
    set(${kind_var} MAKE_DISTRIBUTE PARENT_SCOPE)
    return()
  endif()
  string(JOIN "\n    " _configs_text ${_configs})
  set(${looked_var}
    "  a CMake install prefix or build tree, one of:\n    ${_configs_text}\n"
    "  a source tree built with make: ${root}/Makefile.config and ${root}/Makefile\n"
    "  a `make distribute` folder: ${root}/include/caffe/proto/caffe.pb.h and ${root}/lib/libcaffe.so"
    PARENT_SCOPE)
  set(${kind_var} "" PARENT_SCOPE)
endfunction()

# The first <dir>/<name> of the directories given that exists, absolute; "" if none.
function(caffe_temperature_first_existing out_var name)
  foreach(_dir ${ARGN})
    if(EXISTS ${_dir}/${name})
      get_filename_component(_found ${_dir}/${name} ABSOLUTE)
      set(${out_var} ${_found} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  set(${out_var} "" PARENT_SCOPE)
endfunction()

# A Caffe with a CaffeConfig.cmake (config_dir; "" when none was named: searched
# for). What the config does not export is looked for next to it: a build tree's
# CaffeConfig exports include/ but not <build>/include (the generated caffe.pb.h).
macro(caffe_temperature_find_cmake_caffe config_dir)
  if("${config_dir}" STREQUAL "")
    find_package(Caffe CONFIG)
    if(NOT Caffe_FOUND)
      message(FATAL_ERROR "No Caffe named and none found: configure with -DCaffe_ROOT=<folder>, "
        "a CMake install prefix or build tree, a source tree built with make, or a `make distribute` "
        "folder (docs/install.md, \"Which Caffe\")")
    endif()
  else()
    find_package(Caffe CONFIG REQUIRED PATHS ${config_dir} NO_DEFAULT_PATH)
  endif()
  set(CAFFE_KIND "CMake (${Caffe_DIR})")
  get_target_property(CAFFE_LIBRARY caffe LOCATION)
  find_path(CAFFE_PROTO_INCLUDE_DIR caffe/proto/caffe.pb.h
    HINTS ${Caffe_DIR}/include ${Caffe_DIR}/../../include NO_DEFAULT_PATH)
  find_program(CAFFE_EXECUTABLE caffe caffe.bin
    HINTS ${Caffe_DIR}/../../bin ${Caffe_DIR}/tools NO_DEFAULT_PATH)
  find_path(PYCAFFE_DIR caffe/pycaffe.py
    HINTS ${Caffe_DIR}/../../python ${Caffe_DIR}/python NO_DEFAULT_PATH)
  set(_proto_hints ${Caffe_DIR}/../../include/caffe/proto ${Caffe_DIR}/include/caffe/proto)
  if(EXISTS ${Caffe_DIR}/CMakeCache.txt)
    file(STRINGS ${Caffe_DIR}/CMakeCache.txt _source REGEX "^Caffe_SOURCE_DIR:")
    string(REGEX REPLACE "^[^=]*=" "" _source "${_source}")
    list(PREPEND _proto_hints ${_source}/src/caffe/proto)
  endif()
  caffe_temperature_first_existing(CAFFE_PROTO_FILE caffe.proto ${_proto_hints})
endmacro()

# The Caffe named by Caffe_ROOT or Caffe_DIR (or found), as described at the top.
macro(caffe_temperature_find_caffe)
  if(NOT Caffe_ROOT AND DEFINED ENV{Caffe_ROOT})
    set(Caffe_ROOT $ENV{Caffe_ROOT} CACHE PATH "The Caffe to build against")
  endif()
  if(NOT Caffe_DIR AND DEFINED ENV{Caffe_DIR})
    set(Caffe_DIR $ENV{Caffe_DIR} CACHE PATH "The folder of the CaffeConfig.cmake to build against")
  endif()
  # What was found for another Caffe is forgotten when the Caffe named changes.
  if(Caffe_ROOT)
    set(_caffe_named ${Caffe_ROOT})
  else()
    set(_caffe_named "${Caffe_DIR}")
  endif()
  if(DEFINED CAFFE_TEMPERATURE_NAMED_CAFFE AND NOT "${_caffe_named}" STREQUAL "${CAFFE_TEMPERATURE_NAMED_CAFFE}")
    foreach(_cached CAFFE_PROTO_INCLUDE_DIR CAFFE_EXECUTABLE PYCAFFE_DIR CAFFE_TEMPERATURE_CBLAS_DIR
        CAFFE_TEMPERATURE_GLOG_LOGGING_H_DIR CAFFE_TEMPERATURE_GFLAGS_GFLAGS_H_DIR
        CAFFE_TEMPERATURE_GOOGLE_PROTOBUF_MESSAGE_H_DIR CAFFE_TEMPERATURE_GLOG_LIBRARY
        CAFFE_TEMPERATURE_GFLAGS_LIBRARY CAFFE_TEMPERATURE_PROTOBUF_LIBRARY)
      unset(${_cached} CACHE)
    endforeach()
  endif()
  set(CAFFE_TEMPERATURE_NAMED_CAFFE "${_caffe_named}" CACHE INTERNAL "")
  if(Caffe_ROOT)
    get_filename_component(_caffe_root ${Caffe_ROOT} ABSOLUTE)
    caffe_temperature_caffe_kind(${_caffe_root} _caffe_kind _caffe_config_dir _caffe_looked)
    if(_caffe_kind STREQUAL "")
      message(FATAL_ERROR "Caffe_ROOT=${Caffe_ROOT} is no Caffe this project can build against. "
        "Looked for:\n${_caffe_looked}")
    elseif(_caffe_kind STREQUAL "CMAKE")
      unset(Caffe_DIR CACHE)
      caffe_temperature_find_cmake_caffe(${_caffe_config_dir})
    else()
      caffe_temperature_find_make_caffe(${_caffe_root} ${_caffe_kind})
    endif()
  elseif(Caffe_DIR)
    get_filename_component(_caffe_config_dir ${Caffe_DIR} ABSOLUTE)
    if(NOT EXISTS ${_caffe_config_dir}/CaffeConfig.cmake)
      message(FATAL_ERROR "Caffe_DIR=${Caffe_DIR} holds no CaffeConfig.cmake; for a Caffe built with "
        "make, or its `make distribute` folder, use -DCaffe_ROOT=<folder>")
    endif()
    caffe_temperature_find_cmake_caffe(${_caffe_config_dir})
  else()
    caffe_temperature_find_cmake_caffe("")
  endif()
  set(Caffe_LIBRARIES caffe)
  caffe_temperature_check_caffe_definitions()
  if(NOT CAFFE_PROTO_INCLUDE_DIR)
    message(FATAL_ERROR "caffe/proto/caffe.pb.h not found for the Caffe ${CAFFE_KIND}: "
      "was it built? (the header is generated by the build)")
  endif()
  # First on the plugin's include path: a build tree's CaffeConfig lacks it.
  set(CAFFE_EXTRA_INCLUDE_DIRS ${CAFFE_PROTO_INCLUDE_DIR})
  get_target_property(_caffe_headers caffe INTERFACE_INCLUDE_DIRECTORIES)
  list(REMOVE_DUPLICATES _caffe_headers)
  list(JOIN _caffe_headers " " _caffe_headers)
  get_target_property(_caffe_definitions_text caffe INTERFACE_COMPILE_DEFINITIONS)
  if(NOT _caffe_definitions_text)
    set(_caffe_definitions_text "(none)")
  endif()
  list(JOIN _caffe_definitions_text " " _caffe_definitions_text)
  message(STATUS "caffe_temperature: Caffe ${CAFFE_KIND}\n"
    "   libcaffe    ${CAFFE_LIBRARY}\n"
    "   headers     ${_caffe_headers}\n"
    "   defines     ${_caffe_definitions_text}\n"
    "   caffe.pb.h  ${CAFFE_PROTO_INCLUDE_DIR}\n"
    "   pycaffe     ${PYCAFFE_DIR}\n"
    "   caffe tool  ${CAFFE_EXECUTABLE}")
endmacro()

# A plugin compiled with other definitions than its Caffe sees other class
# layouts (CPU_ONLY above all) and crashes later: what a CMake Caffe's target
# states must match what its library was built with, and the compiler flags
# given to this project must not undo any of Caffe's definitions.
function(caffe_temperature_check_caffe_definitions)
  get_target_property(_stated caffe INTERFACE_COMPILE_DEFINITIONS)
  if(NOT _stated)
    set(_stated)
  endif()
  caffe_temperature_library_definitions(${CAFFE_LIBRARY} _built)
  if(CPU_ONLY IN_LIST _stated AND NOT CPU_ONLY IN_LIST _built)
    message(FATAL_ERROR "The Caffe ${CAFFE_KIND} says CPU_ONLY, but ${CAFFE_LIBRARY} was built with "
      "CUDA (it needs cuBLAS): its headers and library do not belong together")
  elseif(CPU_ONLY IN_LIST _built AND NOT CPU_ONLY IN_LIST _stated)
    message(FATAL_ERROR "The Caffe ${CAFFE_KIND} says it has CUDA, but ${CAFFE_LIBRARY} was built "
      "CPU-only (it needs no cuBLAS): its headers and library do not belong together")
  endif()
  string(TOUPPER "${CMAKE_BUILD_TYPE}" _type)
  separate_arguments(_flags UNIX_COMMAND "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${_type}}")
  foreach(_definition ${CAFFE_TEMPERATURE_CAFFE_DEFINITIONS})
    if(("-U${_definition}" IN_LIST _flags AND _definition IN_LIST _stated) OR
       ("-D${_definition}" IN_LIST _flags AND NOT _definition IN_LIST _stated))
      if(_definition IN_LIST _stated)
        set(_how with)
      else()
        set(_how without)
      endif()
      message(FATAL_ERROR "The compiler flags \"${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${_type}}\" change "
        "${_definition}, but the Caffe ${CAFFE_KIND} was built ${_how} it: Caffe's classes would have "
        "another layout in the plugin than in libcaffe. Leave Caffe's definitions to its build "
        "(they are taken from it: \"${_stated}\").")
    endif()
  endforeach()
  if(CPU_ONLY IN_LIST _stated)
    set(Caffe_CPU_ONLY ON PARENT_SCOPE)
    set(Caffe_CPU_ONLY_JSON true PARENT_SCOPE)
  else()
    set(Caffe_CPU_ONLY OFF PARENT_SCOPE)
    set(Caffe_CPU_ONLY_JSON false PARENT_SCOPE)
  endif()
endfunction()

# Forks' caffe.proto differ from BVLC's: the SSD fork's and NVIDIA's
# InfogainLossParameter have no `axis` (docs/spec.md: the infogain layer then
# takes softmax_param.axis). Sets CAFFE_TEMPERATURE_INFOGAIN_HAS_AXIS from
# compiling against this Caffe's generated caffe.pb.h.
function(caffe_temperature_detect_proto_fields)
  include(CheckCXXSourceCompiles)
  get_target_property(_includes caffe INTERFACE_INCLUDE_DIRECTORIES)
  set(CMAKE_REQUIRED_INCLUDES ${CAFFE_PROTO_INCLUDE_DIR} ${_includes})
  set(CMAKE_REQUIRED_QUIET ON)
  set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
  set(_header "#include \"caffe/proto/caffe.pb.h\"\n")
  # Checked again at every configure: the cached answer may be another Caffe's.
  unset(CAFFE_TEMPERATURE_INFOGAIN_HAS_AXIS CACHE)
  check_cxx_source_compiles("${_header}int f(const caffe::InfogainLossParameter& p) { return p.axis(); }"
    CAFFE_TEMPERATURE_INFOGAIN_HAS_AXIS)
  if(CAFFE_TEMPERATURE_INFOGAIN_HAS_AXIS)
    message(STATUS "caffe_temperature: infogain_loss_param.axis is the infogain layer's softmax axis")
    return()
  endif()
  # Without `axis`, the header itself must still compile: a failure for any
  # other reason is no fork.
  unset(CAFFE_TEMPERATURE_PROTO_COMPILES CACHE)
  check_cxx_source_compiles("${_header}bool f(const caffe::InfogainLossParameter& p) { return p.has_source(); }"
    CAFFE_TEMPERATURE_PROTO_COMPILES)
  if(NOT CAFFE_TEMPERATURE_PROTO_COMPILES)
    message(FATAL_ERROR "${CAFFE_PROTO_INCLUDE_DIR}/caffe/proto/caffe.pb.h does not compile with "
      "the include folders \"${CMAKE_REQUIRED_INCLUDES}\" (see CMakeFiles/CMakeError.log)")
  endif()
  message(STATUS "caffe_temperature: this Caffe's InfogainLossParameter has no axis: "
    "the infogain layer's softmax axis is softmax_param.axis")
endfunction()
