#ifndef CAFFE_TEMPERATURE_SRC_INFOGAIN_COLUMNS_HPP_
#define CAFFE_TEMPERATURE_SRC_INFOGAIN_COLUMNS_HPP_

// The infogain kernels' look-ups of H by the classes of a strip's positions
// (internal to src/, for infogain_kernels.cpp).
#include <algorithm>
#include <cstring>

#include "caffe_temperature/cpu_clones.hpp"
#include "kernel_layout.hpp"

namespace caffe_temperature {

// Strip form of the positions' classes: each position's class (0 where
// ignored, so that every look-up stays inside H), weight (1, or 0 where
// ignored) and sum_rows_H of its class (0 where ignored).
template <typename Dtype>
CT_INLINE void StripClasses(const int* position_classes,
                            const Dtype* sum_rows_H, int w, int* classes,
                            Dtype* weight, Dtype* row_sum) {
  for (int i = 0; i < w; ++i) {
    const bool valid = position_classes[i] >= 0;
    classes[i] = valid ? position_classes[i] : 0;
    weight[i] = valid ? Dtype(1) : Dtype(0);
    row_sum[i] = valid ? sum_rows_H[classes[i]] : Dtype(0);
  }
}

// Column c of H at column[c] (its classes padded to kClasses), for
// HColumns<float> to look up. Built once per kernel call by the entry point
// and shared, read-only, by the threads: the kernel struct that each clone
// copies (kernel_layout.hpp) then holds a pointer instead of 4 KiB, and
// stays small enough for GCC to keep its members in registers (with the
// table inside, the row gradient of 3300 x 21 took 1.1x the instructions,
// its members reloaded from the stack at every row).
template <typename Dtype>
struct HColumnTable {
  // Double strips gather (a vector holds too few doubles to gain).
  HColumnTable(const Dtype* /*H*/, int /*channels*/, bool /*strips*/) {}
};

template <>
struct HColumnTable<float> {
  static const int kClasses = 32;
  typedef float Floats __attribute__((vector_size(32)));
  // strips: whether the kernel's strips will look columns up.
  HColumnTable(const float* H, int channels, bool strips)
      : built(strips && channels <= kClasses) {
    if (!built) return;
    for (int c = 0; c < channels; ++c) {
      std::fill(column[c], column[c] + kClasses / 8, Floats{});
      for (int l = 0; l < channels; ++l) {
        column[c][l / 8][l % 8] = H[l * channels + c];
      }
    }
  }
  HColumnTable(const HColumnTable&) = delete;
  HColumnTable& operator=(const HColumnTable&) = delete;
  bool built;
  // Vectors of 8 classes, which HColumns loads as they are.
  Floats column[kClasses][kClasses / 8];
};

// H[l_i, c + k] for the positions i of a strip and the channels c + k of a
// group, for the strip loops to read as plain arrays h[k]. Each position has
// its own label, so this is a gather, which x86 does one element at a time
// (AVX2's gather instruction was slower still): at 8 x 21 x 128 x 128 it took
// a third of the infogain backward. For floats and at most kClasses classes,
// column c of H fits in four 8-float registers and a vector of 8 positions
// looks its values up with register permutes (vpermps) instead, the permute
// indices and table selections of its labels shared by the group's channels.
template <typename Dtype>
class HColumns {
 public:
  HColumns(const Dtype* H, int channels, const HColumnTable<Dtype>& /*table*/)
      : H_(H), channels_(channels) {}
  template <typename Group>
  CT_INLINE void Fill(int c, Group group, const int* classes, int w,
                      Dtype (*h)[kStrip]) const {
    for (int k = 0; k < group(); ++k) {
      const Dtype* hc = H_ + c + k;
      for (int i = 0; i < w; ++i) h[k][i] = hc[classes[i] * channels_];
    }
  }

 private:
  const Dtype* H_;
  int channels_;
};

template <>
class HColumns<float> {
 public:
  HColumns(const float* H, int channels, const HColumnTable<float>& table)
      : H_(H), channels_(channels),
        columns_(table.built ? table.column : nullptr) {}
  template <typename Group>
  CT_INLINE void Fill(int c, Group group, const int* classes, int w,
                      float (*h)[kStrip]) const {
    int i = 0;
    switch (columns_ ? (channels_ + 7) / 8 : 0) {
      case 1: i = FillTables<1>(c, group, classes, w, h); break;
      case 2: i = FillTables<2>(c, group, classes, w, h); break;
      case 3: i = FillTables<3>(c, group, classes, w, h); break;
      case 4: i = FillTables<4>(c, group, classes, w, h); break;
    }
    for (int k = 0; k < group(); ++k) {
      const float* hc = H_ + c + k;
      for (int j = i; j < w; ++j) h[k][j] = hc[classes[j] * channels_];
    }
  }

 private:
  // The vectors of 8 positions, through kTables tables of 8 classes; returns
  // the first position left.
  template <int kTables, typename Group>
  CT_INLINE int FillTables(int c, Group group, const int* classes, int w,
                           float (*h)[kStrip]) const {
    typedef HColumnTable<float>::Floats Floats;
    typedef int Ints __attribute__((vector_size(32)));
    int i = 0;
    for (; i + 8 <= w; i += 8) {
      Ints l;
      std::memcpy(&l, classes + i, sizeof l);
      const Ints low = l & 7, high = l >> 3;
      for (int k = 0; k < group(); ++k) {
        const Floats* table = columns_[c + k];
        Floats v = __builtin_shuffle(table[0], low);
        for (int t = 1; t < kTables; ++t) {
          v = high == t ? __builtin_shuffle(table[t], low) : v;
        }
        std::memcpy(h[k] + i, &v, sizeof v);
      }
    }
    return i;
  }

  const float* H_;
  int channels_;
  const HColumnTable<float>::Floats (*columns_)[HColumnTable<float>::kClasses /
                                                8];
};

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SRC_INFOGAIN_COLUMNS_HPP_
