# cmake -DINPUT=<file of cuda/> -DOUTPUT=<file> -P hip_cpu_translate.cmake
#
# Rewrites each kernel launch `kernel<<<blocks, threads[, shmem[, stream]]>>>(`
# into HIP-CPU's `hipLaunchKernelGGL(kernel, blocks, threads, shmem, stream, `
# and fails on any `<<<` left over, so that a launch the rewrite does not
# understand stops the build instead of going untested. For the launch rules
# of tests/emulated/launch_rules.hpp it also writes each kernel's
# `__launch_bounds__(N, M)` as CT_KERNEL_ENTRY(N, M) at the top of its body, and
# fails on a kernel without one and on a static `__shared__` array declared
# otherwise than through CT_STATIC_SHARED (cuda/launch.cuh).
file(READ ${INPUT} source)
set(launch_regex "([A-Za-z_][A-Za-z0-9_]*)<<<([^<>;]*)>>>[ \t\r\n]*\\(")
string(REGEX MATCHALL "${launch_regex}" launches "${source}")
foreach(launch IN LISTS launches)
  string(REGEX REPLACE "${launch_regex}" "\\1" kernel "${launch}")
  string(REGEX REPLACE "${launch_regex}" "\\2" config "${launch}")
  string(REPLACE "," ";" config_list "${config}")
  list(LENGTH config_list config_length)
  if(config_length LESS 2 OR config_length GREATER 4)
    message(FATAL_ERROR "${INPUT}: cannot translate the launch '${launch}'")
  endif()
  while(config_length LESS 4)
    string(APPEND config ", 0")
    math(EXPR config_length "${config_length} + 1")
  endwhile()
  string(REPLACE "${launch}" "hipLaunchKernelGGL(${kernel}, ${config}, "
         source "${source}")
endforeach()
string(FIND "${source}" "<<<" untranslated)
if(NOT untranslated EQUAL -1)
  string(SUBSTRING "${source}" ${untranslated} 80 context)
  message(FATAL_ERROR "${INPUT}: a kernel launch was left untranslated for "
          "HIP-CPU; launch through Launch() in cuda/launch.cuh: ${context}")
endif()

string(REGEX MATCHALL "__global__" kernels "${source}")
list(LENGTH kernels kernel_count)
set(kernel_regex
    "__global__[ \t\r\n]+void[ \t\r\n]+__launch_bounds__\\(([^()]*)\\)([^{;]*){")
string(REGEX MATCHALL "${kernel_regex}" bounded "${source}")
list(LENGTH bounded bounded_count)
if(NOT kernel_count EQUAL bounded_count)
  message(FATAL_ERROR "${INPUT}: ${kernel_count} kernels, ${bounded_count} "
          "of them written `__global__ void __launch_bounds__(N, M) Name(...) {`; "
          "every kernel needs its bounds, free of parentheses")
endif()
string(REGEX REPLACE "${kernel_regex}"
       "__global__ void\\2{\n  CT_KERNEL_ENTRY(\\1);" source "${source}")

# Only macro definitions (a #define line or its continuations) may say
# __shared__: a kernel's static arrays go through CT_STATIC_SHARED.
# (Semicolons out first: they would split the lines as a CMake list.)
string(REPLACE ";" "," lines "${source}")
string(REGEX MATCHALL "[^\n]*__shared__[^\n]*" shared_lines "${lines}")
foreach(line IN LISTS shared_lines)
  if(NOT line MATCHES "^[ \t]*#[ \t]*define" AND
     NOT line MATCHES "\\\\[ \t]*$")
    message(FATAL_ERROR "${INPUT}: declare static shared memory with "
            "CT_STATIC_SHARED (cuda/launch.cuh), so that the emulated launch "
            "rules count it: ${line}")
  endif()
endforeach()
file(WRITE ${OUTPUT} "${source}")
