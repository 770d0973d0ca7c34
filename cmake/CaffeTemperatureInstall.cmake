include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS caffe_temperature EXPORT CaffeTemperatureTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/caffe_temperature DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_BINARY_DIR}/lib/caffe_temperature_build.json
  DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT CaffeTemperatureTargets NAMESPACE CaffeTemperature::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/CaffeTemperature)
configure_package_config_file(cmake/CaffeTemperatureConfig.cmake.in
  ${CMAKE_BINARY_DIR}/CaffeTemperatureConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/CaffeTemperature)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/CaffeTemperatureConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
# With the modules that find its Caffe again (CaffeTemperatureConfig.cmake.in).
install(FILES ${CMAKE_BINARY_DIR}/CaffeTemperatureConfig.cmake
  ${CMAKE_BINARY_DIR}/CaffeTemperatureConfigVersion.cmake
  cmake/CaffeTemperatureCaffe.cmake cmake/CaffeTemperatureMakeCaffe.cmake cmake/caffe_makefile_variables.mk
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/CaffeTemperature)
