# Read after Caffe's own Makefile (make -f Makefile -f <this> caffe-temperature-variables)
# by cmake/CaffeTemperatureMakeCaffe.cmake: prints, one NAME=value a line, what
# that Makefile derived from its Makefile.config, and builds nothing.
.PHONY: caffe-temperature-variables
caffe-temperature-variables:
	$(info CT_LIBRARY=$(DYNAMIC_NAME))
	$(info CT_TOOL=$(TOOL_BUILD_DIR)/caffe.bin)
	$(info CT_PYCAFFE_SO=$(PY$(PROJECT)_SO))
	$(info CT_COMMON_FLAGS=$(COMMON_FLAGS))
	$(info CT_INCLUDE_DIRS=$(INCLUDE_DIRS))
	$(info CT_LIBRARY_DIRS=$(LIBRARY_DIRS))
	@:
