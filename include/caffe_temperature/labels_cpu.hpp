#ifndef CAFFE_TEMPERATURE_LABELS_CPU_HPP_
#define CAFFE_TEMPERATURE_LABELS_CPU_HPP_

// The CPU loss layers' pass over their labels, split between threads like
// the kernels' work: at 8 x 21 x 128 x 128 it is 131072 labels, a tenth of a
// two-thread forward if it ran on one.
#include <algorithm>

#include "caffe_temperature/labels.hpp"
#include "caffe_temperature/parallel.hpp"

namespace caffe_temperature {

// Classifies labels[0, n) (ClassifyLabel) and calls store(pos, kind) for
// each; returns the number of valid labels and sets *first_invalid to the
// first invalid position, or -1. Integer results: the same for any thread
// count.
template <typename Dtype, typename Store>
int ClassifyLabelsCPU(const Dtype* labels, int n, int channels,
                      const IgnoreLabel& ignore, const Store& store,
                      int* first_invalid) {
  int valid = 0, first = n;
  ParallelRanges(n, n, [&](int begin, int end) {
    int count = 0, bad = n;
    for (int pos = begin; pos < end; ++pos) {
      const LabelKind kind = ClassifyLabel(labels[pos], channels, ignore);
      if (kind == kLabelInvalid) bad = std::min(bad, pos);
      count += kind == kLabelValid;
      store(pos, kind);
    }
#pragma omp critical(caffe_temperature_labels)
    {
      valid += count;
      first = std::min(first, bad);
    }
  });
  *first_invalid = first < n ? first : -1;
  return valid;
}

}  // namespace caffe_temperature

#endif  // CAFFE_TEMPERATURE_LABELS_CPU_HPP_
