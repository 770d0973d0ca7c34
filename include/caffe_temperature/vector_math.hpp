#ifndef CAFFE_TEMPERATURE_VECTOR_MATH_HPP_
#define CAFFE_TEMPERATURE_VECTOR_MATH_HPP_

// Scalar building blocks of the CPU kernels' `#pragma omp simd` loops (and of
// the benchmark's limit row, which must pay what the kernels pay), written so
// that GCC vectorises the loops around them.
//
// The exp of the softmax loops. For floats, plain arithmetic that GCC
// inlines and vectorises inside `#pragma omp simd` loops: about 1.5x the
// throughput of glibc's vector expf, which is a call per vector and checks
// every lane for special cases. Only for what a softmax exponentiates: a
// finite logit minus its vector's maximum, never above 0. Vectors whose max
// magnitude bits (a row's, MagnitudeBits) or sum of sizes (a strip
// position's) says it holds an infinity or a NaN take std::exp, whose IEEE
// results the NaN policy (docs/robustness.md) relies on.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace caffe_temperature {

// The larger and the smaller of a and b, for max and min reductions: with
// std::max, which returns a reference, GCC 12 leaves an `omp simd
// reduction(max : ...)` loop scalar (7x slower over a 1000-value row); a
// selection of values it vectorises. A NaN b is not taken.
template <typename Dtype>
inline Dtype Larger(Dtype a, Dtype b) {
  return b > a ? b : a;
}

template <typename Dtype>
inline Dtype Smaller(Dtype a, Dtype b) {
  return b < a ? b : a;
}

// exp(x) for finite x <= 0. Range reduction x = k ln 2 + r, |r| <= ln 2 / 2,
// with k = rint(x / ln 2) (one vroundps on x86-64-v3 and -v4) and ln 2 in two
// parts (the first exact in 9 bits, so k * it is exact for the |k| <= 126
// met here), then a degree-5 polynomial for exp(r), times 2^k. The
// polynomial, 1 + c1 r + ... + c5 r^5, is a minimax fit (Lawson's reweighted
// least squares) of exp's relative error on [-ln 2 / 2, ln 2 / 2] about
// -7e-8 (within [-1.5e-7, 0]): where fast-math merges the two parts of ln 2
// into one float (the FMA builds), exp(r) comes out up to 2.4e-7 too large
// at k = -126, which the low-lying fit takes back. 2^k's exponent bits are
// the low mantissa bits of k + 1.5 * 2^23 + 127, an add and a shift instead
// of a clamp, an int conversion, an add and a shift; for k < -126 they wrap,
// and the select discards the product: x below -87.33 (exp under FLT_MIN,
// -inf included) gives 0. A NaN gives NaN, as std::exp does (the forward's
// fast path relies on it). exp(0) is 1. Within 3.6e-7 relative of exp (3
// ulp at 1) built without fast-math (2.5e-7, test_vector_math) and in the
// x86-64-v3 build (3.1e-7, every 1/1000 down to -87.3 and 3M random floats
// down to -87.33; 3.0e-7 with the degree-7 Cephes polynomial it replaces,
// which took 1.25x as long per exp); in the baseline SSE2 build, whose
// merged ln 2 takes one rounding more, within 4.1e-6 at x near -72 and 1e-6
// for x > -20.
inline float ExpNonPositive(float x) {
  const float k = std::rint(x * 1.44269504088896341f);
  const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
  const float poly =
      ((((8.29748623e-3f * r + 4.19150442e-2f) * r + 1.66675746e-1f) * r +
        4.99988973e-1f) *
           r +
       9.99999642e-1f) *
          r +
      1.0f;
  const float biased = k + 12583039.0f;  // 1.5 * 2^23 + 127
  uint32_t bits;
  std::memcpy(&bits, &biased, sizeof bits);
  bits <<= 23;
  float two_to_k;
  std::memcpy(&two_to_k, &bits, sizeof two_to_k);
  return x < -87.33f ? 0.0f : poly * two_to_k;
}

// Doubles keep glibc's vector exp: a polynomial to double precision would be
// twice as long, and double softmaxes are for checking, not for speed.
inline double ExpNonPositive(double x) { return std::exp(x); }

// Whether x is +-inf or NaN, from its exponent bits: fast-math code may not
// ask std::isfinite, which it folds to true.
inline bool IsSpecial(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) == 0x7f800000u;
}

inline bool IsSpecial(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

// The bits of |x| as a signed integer: an infinity or a NaN has them at
// least kSpecialMagnitude, so the largest over a vector says whether it
// holds one, at one integer max per value beside the max of the values.
inline int32_t MagnitudeBits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return static_cast<int32_t>(bits & 0x7fffffffu);
}

inline int64_t MagnitudeBits(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return static_cast<int64_t>(bits & 0x7fffffffffffffffull);
}

inline bool IsSpecialMagnitude(int32_t bits) { return bits >= 0x7f800000; }

inline bool IsSpecialMagnitude(int64_t bits) {
  return bits >= 0x7ff0000000000000ll;
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_VECTOR_MATH_HPP_
