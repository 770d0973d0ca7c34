#ifndef CAFFE_TEMPERATURE_SRC_KERNEL_LAYOUT_HPP_
#define CAFFE_TEMPERATURE_SRC_KERNEL_LAYOUT_HPP_

// How the fast CPU kernels walk a blob (internal to src/). A blob is outer x
// channels x inner (softmax_kernels.hpp); its work items are
// - rows, when inner = 1: one softmax vector, its channels contiguous;
// - short-row tiles, when inner = 1 and a row has few classes: blocks of
//   rows transposed into a tile [class][row], so that a vector loop runs
//   over the rows instead of a row's few classes;
// - strips, when inner > 1: up to kStrip contiguous positions of one outer
//   index, their loops vectorised over the positions, channel by channel.
// A kernel is a struct that supplies the body of a row and of a strip;
// ForEachLayout calls them for a thread's work items, and RunLayout splits
// the items between the threads (parallel.hpp) and picks the instruction set
// (cpu_clones.hpp). Everything here is inlined into each clone.
#include <algorithm>
#include <type_traits>

#include "caffe_temperature/cpu_clones.hpp"
#include "caffe_temperature/parallel.hpp"
#include "caffe_temperature/softmax_kernels.hpp"
#include "caffe_temperature/streaming.hpp"

namespace caffe_temperature {

// Positions per strip. A strip makes one pass over the channels per blob it
// streams, and wide strips give each channel a long contiguous run (8 KiB of
// floats), which the hardware prefetcher needs to keep up when the channel
// stride is large (1.2-1.3x faster than 256 positions at 8 x 21 x 128 x 128);
// the per-position arrays live in L1 or L2.
const int kStrip = 2048;

// The strip loops visit the channels in groups of kChannelGroup, each
// position's running values (max, sums) in registers across a group: one
// load and store of them per group instead of per channel (at 8 x 21 x 128 x
// 128 the forward took 1.2x less time than with a loop per channel). The
// per-position operations keep the channel order, so the bits do not change.
const int kChannelGroup = 4;

// Calls body(c, group) for channel groups starting at c, where group is an
// std::integral_constant<int, n> with n = kGroup, or 1 for the channels left
// at the end: each group's count is a compile-time constant.
template <int kGroup = kChannelGroup, typename Body>
CT_INLINE void ForChannelGroups(int channels, const Body& body) {
  int c = 0;
  for (; c + kGroup <= channels; c += kGroup) {
    body(c, std::integral_constant<int, kGroup>());
  }
  for (; c < channels; ++c) body(c, std::integral_constant<int, 1>());
}

// Stores value(k) at out[k * stride] for the channels k of a group, computing
// (and loading) every value before the first store. The CPU treats a load as
// dependent on an earlier store whose address agrees with it in the low 12
// bits ("4K aliasing") and holds it back: with channels a multiple of 4 KiB
// apart (inner = 16384) and blobs that malloc aligns alike, each load of a
// group that followed a store of the group did, and the 8 x 21 x 128 x 128
// softmax forward took 1.25x longer (0.59 against 0.46 ns per value, 1
// thread, AVX2).
template <typename Dtype, typename Group, typename Value>
CT_INLINE void StoreGroup(Group group, Dtype* out, int stride,
                          const Value& value) {
  Dtype v[group()];
  for (int k = 0; k < group(); ++k) v[k] = value(k);
  for (int k = 0; k < group(); ++k) out[k * stride] = v[k];
}

// Rows of at most kShortRow classes (a detector's 21 classes over its
// priors, say) are processed a block of rows at a time in strip form, each
// block transposed into a tile: a loop over one short row is mostly the
// set-up, the remainder and the horizontal reductions of its few vectors.
// 2.75M floats, 1 thread (GCC 12, AVX2): rows of 5, 8, 12, 21 and 31 classes
// took 31, 23, 19, 8.6 and 9.0 ms, tiles 3.1-5.1 ms; rows of a multiple of 16
// classes stay rows (16 and 32: 3.4 and 2.2 ms, tiles 4.8 and 4.4), as do
// longer ones (tiles of 33-64 classes were no faster).
const int kShortRow = 32;
const int kShortRowBlock = 256;

inline bool ShortRows(int channels) {
  return channels <= kShortRow && channels % 16 != 0;
}

// tile[c * w + r] = rows[r * C + c] for the w rows of C classes at rows.
template <typename Dtype>
CT_INLINE void ToTile(const Dtype* rows, int C, int w, Dtype* tile) {
  for (int r = 0; r < w; ++r) {
    for (int c = 0; c < C; ++c) tile[c * w + r] = rows[r * C + c];
  }
}

// rows[r * C + c] = tile[c * w + r] * scale[r].
template <typename Dtype>
CT_INLINE void FromTile(const Dtype* tile, int C, int w, const Dtype* scale,
                        Dtype* rows) {
  for (int r = 0; r < w; ++r) {
    for (int c = 0; c < C; ++c) rows[r * C + c] = tile[c * w + r] * scale[r];
  }
}

// y_c *= scale over a strip of w positions, scale per position.
template <typename Dtype>
CT_INLINE void StripScale(Dtype* y, int channels, int stride, int w,
                          const Dtype* scale) {
  ForChannelGroups(channels, [&](int c, auto group) CT_LAMBDA_INLINE {
    Dtype* yc = y + c * stride;
#pragma omp simd
    for (int i = 0; i < w; ++i) {
      const Dtype s = scale[i];
      StoreGroup(group, yc + i, stride, [&](int k) CT_LAMBDA_INLINE {
        return yc[k * stride + i] * s;
      });
    }
  });
}

// A strip of w positions, the first of index `position` (o * inner + i0),
// or a tile of w rows (inner = 1) from row o = position. Element (c, i) of
// the strip is blob[offset + c * stride + i] in a blob; a tile's lies in the
// tile, at tile[c * w + i] (offset 0, stride w). `item` is its work item.
struct Strip {
  int item;
  int o, i0, w;
  int position;
  int offset, stride;
  // Whether the positions run along the outer index (a tile's rows).
  bool along_outer;
};

// What every kernel declares (its struct derives from this one):
// - kShortRowTiles: whether short rows are tiles. Such a kernel (a forward)
//   has an input blob `x` and an output blob `y`, and its strip body
//     void StripBody(const Strip& s, const Dtype* xs, Dtype* es,
//                    Dtype* scale)
//   reads element (c, i) at xs[c * s.stride + i], writes an unnormalised
//   value at es[c * s.stride + i] and each position's factor at scale[i],
//   by which ForEachLayout scales es into y (in place for a strip). es
//   aliases xs when kExpsMayAliasInput.
//   Other kernels' strip body is void StripBody(const Strip& s).
// - stream: whether the row body writes with streaming stores (fenced after
//   the rows).
// The row body is void RowBody(int o).
struct LayoutKernel {
  static const bool kShortRowTiles = false;
  static const bool kExpsMayAliasInput = false;
  bool stream = false;
};

template <typename Kernel>
inline bool UsesTiles(const SoftmaxShape& s) {
  return Kernel::kShortRowTiles && s.inner == 1 && ShortRows(s.channels);
}

// Whether the kernel's strip body runs (on strips or tiles).
template <typename Kernel>
inline bool UsesStrips(const SoftmaxShape& s) {
  return s.inner > 1 || UsesTiles<Kernel>(s);
}

// The kernel's work items: blocks of kShortRowBlock short rows, which a
// thread must take whole (a row's bits depend on where its block starts: a
// vector loop's remainder runs other instructions), rows, or strips.
template <typename Kernel>
inline int LayoutItems(const SoftmaxShape& s) {
  return UsesTiles<Kernel>(s)
             ? (s.outer + kShortRowBlock - 1) / kShortRowBlock
             : StripItems(s.outer, s.inner, kStrip);
}

// The tiles [begin, end) of a kShortRowTiles kernel. y may alias x: a block
// is read whole before it is written.
template <typename Dtype, typename Kernel>
CT_INLINE void ForEachTile(const SoftmaxShape& s, int begin, int end,
                           Kernel& kernel) {
  const int C = s.channels;
  alignas(64) Dtype tiles[2][kShortRow * kShortRowBlock],
      scale[kShortRowBlock];
  Dtype* e = Kernel::kExpsMayAliasInput ? tiles[0] : tiles[1];
  for (int block = begin; block < end; ++block) {
    const int o0 = block * kShortRowBlock;
    const int w = std::min(kShortRowBlock, s.outer - o0);
    ToTile(kernel.x + o0 * C, C, w, tiles[0]);
    const Strip tile = {block, o0, 0, w, o0, 0, w, true};
    kernel.StripBody(tile, tiles[0], e, scale);
    FromTile(e, C, w, scale, kernel.y + o0 * C);
  }
}

// Runs `kernel` over the work items [begin, end) (LayoutItems).
template <typename Dtype, typename Kernel>
CT_INLINE void ForEachLayout(const SoftmaxShape& s, int begin, int end,
                             Kernel& kernel) {
  const int C = s.channels, inner = s.inner;
  if constexpr (Kernel::kShortRowTiles) {
    if (UsesTiles<Kernel>(s)) {
      ForEachTile<Dtype>(s, begin, end, kernel);
      return;
    }
  }
  if (inner == 1) {
    for (int o = begin; o < end; ++o) kernel.RowBody(o);
    if (kernel.stream) StreamFence();
    return;
  }
  alignas(64) Dtype scale[Kernel::kShortRowTiles ? kStrip : 1];
  for (int t = begin; t < end; ++t) {
    int o, i0;
    StripOf(t, inner, kStrip, &o, &i0);
    const Strip strip = {t,      o, i0, std::min(kStrip, inner - i0),
                         o * inner + i0, o * C * inner + i0, inner, false};
    if constexpr (Kernel::kShortRowTiles) {
      Dtype* ys = kernel.y + strip.offset;
      kernel.StripBody(strip, kernel.x + strip.offset, ys, scale);
      StripScale(ys, C, inner, strip.w, scale);
    } else {
      kernel.StripBody(strip);
    }
  }
}

// Defines RunClone, the target_clones function that runs a kernel struct
// (Kernel<float> and Kernel<double>) over work items [begin, end): the
// always-inline bodies are compiled into each clone with that clone's vector
// ISA. The OpenMP loops that split the items between threads stay outside
// the clones (RunLayout). The kernel, a few pointers and values, is copied
// in, so that the compiler sees all of it.
#define CT_LAYOUT_CLONES(Kernel)                                     \
  CT_CLONES void RunClone(const SoftmaxShape& s, int begin, int end, \
                          const Kernel<float>& kernel) {             \
    Kernel<float> k = kernel;                                        \
    ForEachLayout<float>(s, begin, end, k);                          \
  }                                                                  \
  CT_CLONES void RunClone(const SoftmaxShape& s, int begin, int end, \
                          const Kernel<double>& kernel) {            \
    Kernel<double> k = kernel;                                       \
    ForEachLayout<double>(s, begin, end, k);                         \
  }

// Runs `kernel` over the whole blob, its work items split between threads:
// whatever a kernel gathers it writes per work item.
template <typename Kernel>
void RunLayout(const SoftmaxShape& s, const Kernel& kernel) {
  ParallelRanges(LayoutItems<Kernel>(s), s.count(), [&](int begin, int end) {
    RunClone(s, begin, end, kernel);
  });
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SRC_KERNEL_LAYOUT_HPP_
