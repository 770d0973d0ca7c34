# build/bin/caffe: the stock caffe tool with the plugin preloaded, so that
# `caffe train|test|time` accept the plugin's layer types.
if(NOT CAFFE_EXECUTABLE)
  message(STATUS "caffe_temperature: no caffe tool found, no wrapper")
  return()
endif()
file(GENERATE OUTPUT ${CMAKE_BINARY_DIR}/bin/caffe
  CONTENT "#!/bin/sh\n# The stock caffe tool with the caffe-temperature layers.\nLD_PRELOAD=\"$<TARGET_FILE:caffe_temperature>\${LD_PRELOAD:+:\$LD_PRELOAD}\" exec \"${CAFFE_EXECUTABLE}\" \"$@\"\n"
  FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
