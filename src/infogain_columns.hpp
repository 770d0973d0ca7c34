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

// H[l_i, c + k] for the positions i of a strip and the channels c + k of a
// group, for the strip loops to read as plain arrays h[k]. Each position has
// its own label, so this is a gather, which x86 does one element at a time
// (AVX2's gather instruction was slower still): at 8 x 21 x 128 x 128 it took
// a third of the infogain backward. For floats and at most kTableClasses
// classes, column c of H fits in four 8-float registers and a vector of 8
// positions looks its values up with register permutes (vpermps) instead,
// the permute indices and table selections of its labels shared by the
// group's channels.
template <typename Dtype>
class HColumns {
 public:
  // table: whether the strips will look columns up (the float version's
  // tables are built for them).
  HColumns(const Dtype* H, int channels, bool /*table*/)
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
  static const int kTableClasses = 32;
  HColumns(const float* H, int channels, bool table)
      : H_(H), channels_(channels), table_(table) {
    if (!table || channels > kTableClasses) return;
    for (int c = 0; c < channels; ++c) {
      std::fill(columns_[c], columns_[c] + kTableClasses, 0.0f);
      for (int l = 0; l < channels; ++l) columns_[c][l] = H[l * channels + c];
    }
  }
  // A copy (each clone's, kernel_layout.hpp) builds its own table, if any:
  // copying the 4 KiB made the row gradient of 64 x 1000, which needs none,
  // take 1.2x the instructions.
  HColumns(const HColumns& other)
      : HColumns(other.H_, other.channels_, other.table_) {}
  HColumns& operator=(const HColumns&) = delete;
  template <typename Group>
  CT_INLINE void Fill(int c, Group group, const int* classes, int w,
                      float (*h)[kStrip]) const {
    int i = 0;
    switch (channels_ <= kTableClasses ? (channels_ + 7) / 8 : 0) {
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
    typedef float Floats __attribute__((vector_size(32)));
    typedef int Ints __attribute__((vector_size(32)));
    int i = 0;
    for (; i + 8 <= w; i += 8) {
      Ints l;
      std::memcpy(&l, classes + i, sizeof l);
      const Ints low = l & 7, high = l >> 3;
      for (int k = 0; k < group(); ++k) {
        Floats table[kTables];
        std::memcpy(table, columns_[c + k], sizeof table);
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
  bool table_;
  alignas(32) float columns_[kTableClasses][kTableClasses];
};

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_SRC_INFOGAIN_COLUMNS_HPP_
