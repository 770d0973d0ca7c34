#ifndef CAFFE_TEMPERATURE_CPU_CLONES_HPP_
#define CAFFE_TEMPERATURE_CPU_CLONES_HPP_

// How the CPU kernels get vector code for the machine they run on while the
// library is built for any x86-64: each entry point's work is one function
// marked CT_CLONES, compiled for x86-64-v4 (AVX-512), -v3 (AVX2 + FMA) and
// the baseline and picked at load time. Its helpers and lambdas are forced
// inline (CT_INLINE, CT_LAMBDA_INLINE) so that each clone compiles them for
// its own instruction set. OpenMP's outlined loop bodies are not cloned: the
// threads' loops stay outside the clones and call them.

#define CT_INLINE inline __attribute__((always_inline))
#define CT_LAMBDA_INLINE __attribute__((always_inline))
#ifndef CT_CLONES  // tests/vectorisation builds one instruction set at a time
#define CT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

#endif  // CAFFE_TEMPERATURE_CPU_CLONES_HPP_
