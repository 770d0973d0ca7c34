#ifndef CAFFE_TEMPERATURE_STREAMING_HPP_
#define CAFFE_TEMPERATURE_STREAMING_HPP_

// Non-temporal ("streaming") stores for outputs too large to stay in cache.
// An ordinary store first reads the line it writes into the cache (a read
// for ownership), so a gradient pass over a blob larger than the caches
// moves the output twice; a streaming store writes whole lines straight to
// memory. At 1024 x 32000 floats the softmax backward (read y and dy, write
// dx) took 23 ms with ordinary stores and 14.5 ms with streaming ones on
// one core of the development VM (11 and 14 ms on two).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "caffe_temperature/cpu_clones.hpp"

namespace caffe_temperature {

// Outputs from this size on are streamed: the L3 cache of a Zen 3 core
// complex (one core's share of an L3 is at most that on current x86
// servers), beyond which the next layer reads them from memory anyway.
const int64_t kStreamingBytes = int64_t(32) << 20;

inline bool StreamsOutput(int64_t count, int64_t value_bytes) {
  return count * value_bytes >= kStreamingBytes;
}

// One 16-byte streaming store of the values at src (SSE2, so in every
// instruction-set clone); dst 16-byte aligned.
inline void Stream16(float* dst, const float* src) {
  _mm_stream_ps(dst, _mm_loadu_ps(src));
}
inline void Stream16(double* dst, const double* src) {
  _mm_stream_pd(dst, _mm_loadu_pd(src));
}

// dst[0, n) = src[0, n), with streaming stores from the first 16-byte
// boundary of dst on.
template <typename Dtype>
inline void StreamCopy(Dtype* dst, const Dtype* src, int n) {
  const int lanes = 16 / sizeof(Dtype);
  int i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) {
    dst[i] = src[i];
  }
  for (; i + lanes <= n; i += lanes) Stream16(dst + i, src + i);
  for (; i < n; ++i) dst[i] = src[i];
}

// Values computed per chunk into L1, then streamed out.
const int kStreamChunk = 1024;

// out[c] = value(c) for c in [0, n): in place, or, with `stream`, chunk by
// chunk through a buffer in L1 copied out with StreamCopy. A caller that
// streams ends its work with StreamFence(), before another thread may read
// what it wrote. Index is the type of n and of value's argument, the same
// throughout, so that value(c)'s loads stay contiguous vector loads (an int
// argument computed from a 64-bit index made GCC 12 give up on that: 1.8x
// slower).
template <typename Index, typename Dtype, typename Value>
CT_INLINE void WriteValues(Dtype* out, Index n, bool stream,
                           const Value& value) {
  if (!stream) {
#pragma omp simd
    for (Index c = 0; c < n; ++c) out[c] = value(c);
    return;
  }
  alignas(64) Dtype chunk[kStreamChunk];
  for (Index c0 = 0; c0 < n; c0 += kStreamChunk) {
    const Index len = std::min<Index>(kStreamChunk, n - c0);
#pragma omp simd
    for (Index c = 0; c < len; ++c) chunk[c] = value(c0 + c);
    StreamCopy(out + c0, chunk, static_cast<int>(len));
  }
}

// Orders the streaming stores before whatever follows (they are weakly
// ordered on x86).
inline void StreamFence() { _mm_sfence(); }

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_STREAMING_HPP_
