# cmake -DINPUT=<file of cuda/> -DOUTPUT=<file> -P hip_cpu_translate.cmake
#
# Rewrites each kernel launch `kernel<<<blocks, threads[, shmem[, stream]]>>>(`
# into HIP-CPU's `hipLaunchKernelGGL(kernel, blocks, threads, shmem, stream, `
# and fails on any `<<<` left over, so that a launch the rewrite does not
# understand stops the build instead of going untested.
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
file(WRITE ${OUTPUT} "${source}")
