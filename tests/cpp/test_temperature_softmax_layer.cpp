#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/softmax_layer.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe_temperature/reference_kernels.hpp"
#include "caffe_temperature/temperature_softmax_layer.hpp"
#include "test_util.hpp"

namespace caffe_temperature_test {

using caffe::Blob;
using caffe::Caffe;
using caffe::LayerParameter;
using caffe::TemperatureSoftmaxLayer;
using caffe_temperature::SoftmaxShape;
using std::vector;

// Where the layer reads beta from: scale_param's filler, or bottom[1] with
// one value, one per sample or one per position.
enum BetaSource { kFiller, kShared, kPerSample, kPerPosition };
const BetaSource kBottomSources[] = {kShared, kPerSample, kPerPosition};

LayerParameter TemperatureSoftmaxParam(int axis) {
  LayerParameter param;
  param.set_name("tsm");
  param.set_type("TemperatureSoftmax");
  param.mutable_softmax_param()->set_axis(axis);
  return param;
}

void SetFillerBeta(LayerParameter* param, float beta) {
  caffe::FillerParameter* filler =
      param->mutable_scale_param()->mutable_filler();
  filler->set_type("constant");
  filler->set_value(beta);
}

// The layer's outputs computed in double from the same (rounded) inputs, and
// the size of the terms each gradient is summed from (ErrorScales).
struct Reference {
  vector<double> y;
  vector<double> dx;
  vector<double> dx_scale;
  vector<double> dbeta;  // empty when beta is not a bottom
  vector<double> dbeta_scale;
};

template <typename TypeParam>
class TemperatureSoftmaxLayerTest : public MultiDeviceTest<TypeParam> {
 protected:
  typedef typename TypeParam::Dtype Dtype;

  void SetUp() override {
    MultiDeviceTest<TypeParam>::SetUp();
    Caffe::set_random_seed(1701);
  }

  // Relative tolerance (against max(1, |expected|)) for results computed in
  // Dtype from a handful of exp and sums.
  static double Tolerance() { return sizeof(Dtype) == 4 ? 2e-5 : 1e-11; }

  // x ~ N(0, 2^2) of `shape`; for a bottom beta source, bottom[1] holds 1,
  // outer or outer * inner values in [0.5, 2].
  void Prepare(const vector<int>& shape, int axis, BetaSource source) {
    x_.Reshape(shape);
    caffe::caffe_rng_gaussian<Dtype>(x_.count(), 0, 2, x_.mutable_cpu_data());
    bottom_.assign(1, &x_);
    top_.assign(1, &y_);
    if (source == kFiller) return;
    const int a = x_.CanonicalAxisIndex(axis);
    const int outer = x_.count(0, a), inner = x_.count(a + 1);
    const int n = source == kShared ? 1
                  : source == kPerSample ? outer : outer * inner;
    beta_.Reshape(vector<int>(1, n));
    caffe::caffe_rng_uniform<Dtype>(n, 0.5, 2, beta_.mutable_cpu_data());
    bottom_.push_back(&beta_);
  }

  void FillTopDiff() {
    caffe::caffe_rng_gaussian<Dtype>(y_.count(), 0, 1, y_.mutable_cpu_diff());
  }

  // Forward, then Backward of a random top diff to every bottom.
  void ForwardBackward(caffe::Layer<Dtype>* layer) {
    layer->SetUp(bottom_, top_);
    layer->Forward(bottom_, top_);
    FillTopDiff();
    layer->Backward(top_, vector<bool>(bottom_.size(), true), bottom_);
  }

  // Forward and backward of docs/spec.md from the plain kernels of
  // reference_kernels.hpp in double, from x_, the top diff in y_ and beta as
  // the layer holds it (in Dtype).
  Reference ComputeReference(const LayerParameter& param) {
    const SoftmaxShape shape = ShapeOf(x_, param.softmax_param().axis());
    const vector<double> x = InDouble(x_.cpu_data(), x_.count());
    const vector<double> dy = InDouble(y_.cpu_diff(), y_.count());
    const bool beta_bottom = bottom_.size() > 1;
    const vector<double> betas =
        beta_bottom ? InDouble(beta_.cpu_data(), beta_.count())
                    : vector<double>(1, static_cast<Dtype>(
                          param.has_scale_param()
                              ? param.scale_param().filler().value()
                              : 1));
    // One beta, one per outer index, or one per position (Prepare).
    const int n = betas.size();
    const bool per_position = n > 1 && n != shape.outer;
    const caffe_temperature::BetaView<double> beta = {
        betas.data(), n == 1 ? 0 : per_position ? shape.inner : 1,
        per_position ? 1 : 0};
    Reference ref;
    ref.y.resize(x.size());
    ref.dx.resize(x.size());
    caffe_temperature::reference::SoftmaxForwardCPU(shape, x.data(), beta,
                                                    ref.y.data());
    caffe_temperature::reference::SoftmaxBackwardCPU(
        shape, ref.y.data(), dy.data(), beta, ref.dx.data());
    vector<double> position_grad(shape.positions());
    caffe_temperature::reference::SoftmaxBetaGradientCPU(
        shape, x.data(), ref.y.data(), dy.data(), position_grad.data());
    ErrorScales(shape, x, dy, beta, &ref);
    if (!beta_bottom) return ref;
    // A shared beta's gradient sums its positions', as the layer's does.
    ref.dbeta.assign(n, 0);
    for (int pos = 0; pos < shape.positions(); ++pos) {
      ref.dbeta[BetaIndex(beta, shape, pos)] += position_grad[pos];
    }
    return ref;
  }

  static int BetaIndex(const caffe_temperature::BetaView<double>& beta,
                       const SoftmaxShape& shape, int pos) {
    return pos / shape.inner * beta.outer_stride +
           pos % shape.inner * beta.inner_stride;
  }

  // The sizes of the terms each gradient sums, from the reference's y: the
  // rounding errors of the layer's gradients scale with those, not with the
  // (possibly cancelled) result.
  void ErrorScales(const SoftmaxShape& shape, const vector<double>& x,
                   const vector<double>& dy,
                   const caffe_temperature::BetaView<double>& beta,
                   Reference* ref) {
    ref->dx_scale.resize(x.size());
    ref->dbeta_scale.assign(bottom_.size() > 1 ? beta_.count() : 0, 0);
    for (int pos = 0; pos < shape.positions(); ++pos) {
      const int first = pos / shape.inner * shape.channels * shape.inner +
                        pos % shape.inner;
      double m = x[first], abs_dot = 0, spread = 0;
      for (int c = 1; c < shape.channels; ++c) {
        m = std::max(m, x[first + c * shape.inner]);
      }
      for (int c = 0; c < shape.channels; ++c) {
        const int k = first + c * shape.inner;
        abs_dot += std::fabs(dy[k]) * ref->y[k];
        spread += ref->y[k] * (m - x[k]);
      }
      const int b = BetaIndex(beta, shape, pos);
      for (int c = 0; c < shape.channels; ++c) {
        const int k = first + c * shape.inner;
        ref->dx_scale[k] =
            beta.data[b] * ref->y[k] * (std::fabs(dy[k]) + abs_dot);
        if (!ref->dbeta_scale.empty()) {
          ref->dbeta_scale[b] +=
              std::fabs(dy[k]) * ref->y[k] * (m - x[k] + spread);
        }
      }
    }
  }

  // |actual - expected| <= tolerance * max(1, scale), where scale defaults to
  // |expected|.
  void ExpectNear(const Dtype* actual, const vector<double>& expected,
                  double tolerance, const char* what,
                  const vector<double>* scale = NULL) {
    for (int k = 0; k < expected.size(); ++k) {
      // A NaN expected (from a NaN or infinite logit) asks for a NaN.
      if (std::isnan(expected[k]) && std::isnan(actual[k])) continue;
      const double s = scale ? (*scale)[k] : std::fabs(expected[k]);
      ASSERT_NEAR(actual[k], expected[k], tolerance * std::max(1.0, s))
          << what << "[" << k << "]";
    }
  }

  void ExpectMatchesReference(const LayerParameter& param, double tolerance) {
    const Reference ref = ComputeReference(param);
    ExpectNear(y_.cpu_data(), ref.y, tolerance, "y");
    ExpectNear(x_.cpu_diff(), ref.dx, tolerance, "dx", &ref.dx_scale);
    if (bottom_.size() > 1) {
      ExpectNear(beta_.cpu_diff(), ref.dbeta, tolerance, "dbeta",
                 &ref.dbeta_scale);
    }
  }

  void CheckAgainstReference(const vector<int>& shape, int axis,
                             BetaSource source, float filler_beta) {
    SCOPED_TRACE(::testing::Message()
                 << "shape " << Blob<Dtype>(shape).shape_string() << " axis "
                 << axis << " source " << source << " beta " << filler_beta);
    LayerParameter param = TemperatureSoftmaxParam(axis);
    if (source == kFiller) SetFillerBeta(&param, filler_beta);
    Prepare(shape, axis, source);
    TemperatureSoftmaxLayer<Dtype> layer(param);
    ForwardBackward(&layer);
    ExpectMatchesReference(param, Tolerance());
  }

  Blob<Dtype> x_, beta_, y_;
  vector<Blob<Dtype>*> bottom_, top_;
};

TYPED_TEST_SUITE(TemperatureSoftmaxLayerTest, TestDtypesAndDevices);

// The shapes cover each GPU kernel: a warp per row (C = 33, not a multiple
// of 32), a block per row (C = 1500), a thread per position (inner > 1);
// and on the CPU, short rows (C = 21: blocks of 256 rows transposed into
// tiles, the last block partial).
TYPED_TEST(TemperatureSoftmaxLayerTest, MatchesReferenceForSeveralT) {
  const float kBetas[] = {1.f / 40, 1.f / 3, 1.f, 4.f};
  for (const float beta : kBetas) {
    this->CheckAgainstReference({2, 5, 3, 4}, 1, kFiller, beta);
    this->CheckAgainstReference({2, 5, 3, 4}, -1, kFiller, beta);
    this->CheckAgainstReference({2, 5, 3, 4}, 0, kFiller, beta);
    this->CheckAgainstReference({4, 33}, 1, kFiller, beta);
    this->CheckAgainstReference({3, 1500}, -1, kFiller, beta);
    this->CheckAgainstReference({2, 1500, 3}, 1, kFiller, beta);
    this->CheckAgainstReference({600, 21}, 1, kFiller, beta);
  }
}

TYPED_TEST(TemperatureSoftmaxLayerTest, MatchesReferenceWithBetaBottom) {
  for (const BetaSource source : kBottomSources) {
    this->CheckAgainstReference({2, 5, 3, 4}, 1, source, 0);
    this->CheckAgainstReference({2, 5, 3, 4}, 2, source, 0);
    this->CheckAgainstReference({2, 5, 3, 4}, -1, source, 0);
    this->CheckAgainstReference({4, 33}, 1, source, 0);
    this->CheckAgainstReference({3, 1500}, 1, source, 0);
    this->CheckAgainstReference({3, 1, 2}, 1, source, 0);
    this->CheckAgainstReference({3, 200, 7}, 2, source, 0);
  }
}

TYPED_TEST(TemperatureSoftmaxLayerTest, NoScaleParamMeansTOne) {
  typedef typename TypeParam::Dtype Dtype;
  const LayerParameter param = TemperatureSoftmaxParam(1);
  this->Prepare({2, 6, 3}, 1, kFiller);
  TemperatureSoftmaxLayer<Dtype> layer(param);
  this->ForwardBackward(&layer);
  this->ExpectMatchesReference(param, this->Tolerance());
  // T = 1 really was used: softmax of x, not of some other multiple of x.
  const Dtype* x = this->x_.cpu_data();
  const Dtype* y = this->y_.cpu_data();
  EXPECT_NEAR(y[0] / y[3], std::exp(x[0] - x[3]), 1e-4 * y[0] / y[3]);
}

TYPED_TEST(TemperatureSoftmaxLayerTest, BetaOneEqualsStockSoftmaxOnEveryAxis) {
  typedef typename TypeParam::Dtype Dtype;
  const double tolerance = sizeof(Dtype) == 4 ? 1e-6 : 1e-13;
  for (int axis = -4; axis < 4; ++axis) {
    SCOPED_TRACE(::testing::Message() << "axis " << axis);
    LayerParameter param = TemperatureSoftmaxParam(axis);
    SetFillerBeta(&param, 1);
    this->Prepare({2, 3, 4, 5}, axis, kFiller);
    TemperatureSoftmaxLayer<Dtype> layer(param);
    this->ForwardBackward(&layer);

    const int n = this->x_.count();
    const vector<double> y(this->y_.cpu_data(), this->y_.cpu_data() + n);
    const vector<double> dx(this->x_.cpu_diff(), this->x_.cpu_diff() + n);

    Blob<Dtype> stock_top;
    const vector<Blob<Dtype>*> stock_top_vec(1, &stock_top);
    caffe::SoftmaxLayer<Dtype> stock(param);
    stock.SetUp(this->bottom_, stock_top_vec);
    stock.Forward(this->bottom_, stock_top_vec);
    stock_top.CopyFrom(this->y_, true);
    stock.Backward(stock_top_vec, vector<bool>(1, true), this->bottom_);
    this->ExpectNear(stock_top.cpu_data(), y, tolerance, "y");
    this->ExpectNear(this->x_.cpu_diff(), dx, tolerance, "dx");
  }
}

TYPED_TEST(TemperatureSoftmaxLayerTest, GradientToX) {
  typedef typename TypeParam::Dtype Dtype;
  const int kAxes[] = {0, 1, -1};
  for (const int axis : kAxes) {
    SCOPED_TRACE(::testing::Message() << "axis " << axis);
    LayerParameter param = TemperatureSoftmaxParam(axis);
    SetFillerBeta(&param, 0.5);
    this->Prepare({2, 4, 3, 2}, axis, kFiller);
    TemperatureSoftmaxLayer<Dtype> layer(param);
    caffe::GradientChecker<Dtype> checker(1e-2, 1e-3);
    checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_);
  }
}

TYPED_TEST(TemperatureSoftmaxLayerTest, GradientToXAndBetaBottom) {
  typedef typename TypeParam::Dtype Dtype;
  const int kAxes[] = {0, 1, 2, -1};
  for (const BetaSource source : kBottomSources) {
    for (const int axis : kAxes) {
      SCOPED_TRACE(::testing::Message()
                   << "axis " << axis << " source " << source);
      const LayerParameter param = TemperatureSoftmaxParam(axis);
      this->Prepare({2, 3, 2, 2}, axis, source);
      TemperatureSoftmaxLayer<Dtype> layer(param);
      caffe::GradientChecker<Dtype> checker(1e-2, 1e-3);
      checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_);
    }
  }
}

// Large logits saturate exp unless the max is subtracted; large T flattens
// the distribution. Both must stay finite and exact.
TYPED_TEST(TemperatureSoftmaxLayerTest, ExtremeInputsAndTemperatures) {
  typedef typename TypeParam::Dtype Dtype;
  const float kBetas[] = {1 / 0.01f, 1 / 1e4f};
  const int kAxes[] = {1, -1};
  for (const float beta : kBetas) {
    for (const int axis : kAxes) {
      for (const BetaSource source : {kFiller, kShared}) {
        SCOPED_TRACE(::testing::Message() << "beta " << beta << " axis "
                     << axis << " source " << source);
        LayerParameter param = TemperatureSoftmaxParam(axis);
        SetFillerBeta(&param, beta);
        this->Prepare({3, 7, 5}, axis, source);
        Dtype* x = this->x_.mutable_cpu_data();
        for (int k = 0; k < this->x_.count(); ++k) {
          x[k] = 1e4 * ((k * 7 % 9) - 4) / 4 + (k % 3);  // within +-1e4 + 2
        }
        if (source == kShared) this->beta_.mutable_cpu_data()[0] = beta;
        TemperatureSoftmaxLayer<Dtype> layer(param);
        this->ForwardBackward(&layer);
        for (int k = 0; k < this->x_.count(); ++k) {
          ASSERT_TRUE(std::isfinite(this->y_.cpu_data()[k])) << k;
          ASSERT_TRUE(std::isfinite(this->x_.cpu_diff()[k])) << k;
        }
        this->ExpectMatchesReference(param, this->Tolerance());
      }
    }
  }
}

// Logits with a large common offset: the beta gradient is O(1) while
// sum dy y x is O(1e4), so it must not be formed as a difference of the two.
TYPED_TEST(TemperatureSoftmaxLayerTest, BetaGradientWithLargeOffset) {
  typedef typename TypeParam::Dtype Dtype;
  const int kAxes[] = {1, -1};
  for (const int axis : kAxes) {
    SCOPED_TRACE(::testing::Message() << "axis " << axis);
    const LayerParameter param = TemperatureSoftmaxParam(axis);
    this->Prepare({4, 50, 3}, axis, kPerPosition);
    Dtype* x = this->x_.mutable_cpu_data();
    for (int k = 0; k < this->x_.count(); ++k) x[k] += 1e4;
    TemperatureSoftmaxLayer<Dtype> layer(param);
    this->ForwardBackward(&layer);
    this->ExpectMatchesReference(param, this->Tolerance());
  }
}

// Also with an infinity, a minus infinity and a NaN among the logits: such a
// position is recomputed with IEEE exps after the fast pass, which in place
// has overwritten its logits.
TYPED_TEST(TemperatureSoftmaxLayerTest, InPlaceWithoutBetaBottom) {
  typedef typename TypeParam::Dtype Dtype;
  const int kAxes[] = {1, -1};
  for (const int axis : kAxes) {
    for (const bool non_finite : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "axis " << axis
                                        << (non_finite ? ", non-finite" : ""));
      LayerParameter param = TemperatureSoftmaxParam(axis);
      SetFillerBeta(&param, 0.3);
      this->Prepare({2, 6, 4}, axis, kFiller);
      if (non_finite) {
        Dtype* x = this->x_.mutable_cpu_data();
        x[1] = std::numeric_limits<Dtype>::infinity();
        x[6] = -std::numeric_limits<Dtype>::infinity();
        x[27] = std::numeric_limits<Dtype>::quiet_NaN();
      }
      Blob<Dtype> z;
      z.CopyFrom(this->x_, false, true);
      TemperatureSoftmaxLayer<Dtype> layer(param);
      this->ForwardBackward(&layer);

      const vector<Blob<Dtype>*> in_place(1, &z);
      TemperatureSoftmaxLayer<Dtype> in_place_layer(param);
      in_place_layer.SetUp(in_place, in_place);
      in_place_layer.Forward(in_place, in_place);
      caffe::caffe_copy(z.count(), this->y_.cpu_diff(), z.mutable_cpu_diff());
      in_place_layer.Backward(in_place, vector<bool>(1, true), in_place);

      const int n = z.count();
      const vector<double> y(this->y_.cpu_data(), this->y_.cpu_data() + n);
      const vector<double> dx(this->x_.cpu_diff(), this->x_.cpu_diff() + n);
      EXPECT_EQ(std::count_if(y.begin(), y.end(),
                              [](double v) { return std::isnan(v); }),
                non_finite ? 2 * this->x_.shape(axis) : 0);  // +inf's, NaN's
      this->ExpectNear(z.cpu_data(), y, 1e-12, "in-place y");
      this->ExpectNear(z.cpu_diff(), dx, 1e-12, "in-place dx");
    }
  }
}

// propagate_down: false for beta lifts the in-place restriction.
TYPED_TEST(TemperatureSoftmaxLayerTest, InPlaceWithBetaBottomWithoutBetaGrad) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = TemperatureSoftmaxParam(1);
  param.add_propagate_down(true);
  param.add_propagate_down(false);
  this->Prepare({2, 6, 4}, 1, kPerSample);
  Blob<Dtype> z;
  z.CopyFrom(this->x_, false, true);
  TemperatureSoftmaxLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);

  vector<Blob<Dtype>*> bottom(1, &z);
  bottom.push_back(&this->beta_);
  const vector<Blob<Dtype>*> top(1, &z);
  TemperatureSoftmaxLayer<Dtype> in_place_layer(param);
  in_place_layer.SetUp(bottom, top);
  in_place_layer.Forward(bottom, top);
  const int n = z.count();
  const vector<double> y(this->y_.cpu_data(), this->y_.cpu_data() + n);
  this->ExpectNear(z.cpu_data(), y, 1e-12, "in-place y");
}

// No position, or no class: y is empty, each beta gets gradient 0 (an empty
// sum, not what an earlier batch left), and no empty blob is read or written
// (stock Caffe gives a blob no memory until it has held a value).
TYPED_TEST(TemperatureSoftmaxLayerTest, EmptyInput) {
  typedef typename TypeParam::Dtype Dtype;
  const struct { vector<int> x; int beta_count; } cases[] = {
      {{0, 10}, 1}, {{0, 10}, 0}, {{2, 0, 3}, 2}};
  for (const auto& c : cases) {
    Blob<Dtype> x(c.x), y, beta(vector<int>(1, c.beta_count));
    if (c.beta_count > 0) {
      caffe::caffe_set(c.beta_count, Dtype(2), beta.mutable_cpu_data());
      caffe::caffe_set(c.beta_count, Dtype(7), beta.mutable_cpu_diff());
    }
    const vector<Blob<Dtype>*> bottom{&x, &beta}, top{&y};
    TemperatureSoftmaxLayer<Dtype> layer(TemperatureSoftmaxParam(1));
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    layer.Backward(top, vector<bool>(2, true), bottom);
    EXPECT_EQ(y.shape(), x.shape());
    for (int i = 0; i < c.beta_count; ++i) {
      EXPECT_EQ(beta.cpu_diff()[i], Dtype(0));
    }
  }
}

// GPU results against the CPU path on the same inputs.
TYPED_TEST(TemperatureSoftmaxLayerTest, GpuMatchesCpu) {
  typedef typename TypeParam::Dtype Dtype;
  if (TypeParam::device != Caffe::GPU) GTEST_SKIP() << "GPU only";
  const struct {
    vector<int> shape;
    int axis;
  } kCases[] = {{{2, 5, 3, 4}, 1}, {{2, 5, 3, 4}, -1}, {{8, 33}, 1},
                {{3, 1500}, 1}, {{2, 1500, 3}, 1}, {{64, 1000}, -1}};
  for (const auto& c : kCases) {
    for (const BetaSource source :
         {kFiller, kShared, kPerSample, kPerPosition}) {
      SCOPED_TRACE(::testing::Message()
                   << "axis " << c.axis << " source " << source);
      LayerParameter param = TemperatureSoftmaxParam(c.axis);
      if (source == kFiller) SetFillerBeta(&param, 0.25);
      this->Prepare(c.shape, c.axis, source);
      TemperatureSoftmaxLayer<Dtype> gpu_layer(param);
      this->ForwardBackward(&gpu_layer);
      Blob<Dtype> gpu_y, gpu_x, gpu_beta;
      gpu_y.CopyFrom(this->y_, false, true);
      gpu_x.CopyFrom(this->x_, true, true);
      if (source != kFiller) gpu_beta.CopyFrom(this->beta_, true, true);

      Caffe::set_mode(Caffe::CPU);
      TemperatureSoftmaxLayer<Dtype> cpu_layer(param);
      cpu_layer.SetUp(this->bottom_, this->top_);
      cpu_layer.Forward(this->bottom_, this->top_);  // keeps the top diff
      cpu_layer.Backward(this->top_, vector<bool>(this->bottom_.size(), true),
                         this->bottom_);
      Caffe::set_mode(Caffe::GPU);

      const int n = this->x_.count();
      const Dtype* y = gpu_y.cpu_data();
      const Dtype* dx = gpu_x.cpu_diff();
      this->ExpectNear(this->y_.cpu_data(), vector<double>(y, y + n),
                       this->Tolerance(), "y");
      this->ExpectNear(this->x_.cpu_diff(), vector<double>(dx, dx + n),
                       this->Tolerance(), "dx");
      if (source != kFiller) {
        const Dtype* dbeta = gpu_beta.cpu_diff();
        this->ExpectNear(this->beta_.cpu_diff(),
                         vector<double>(dbeta, dbeta + gpu_beta.count()),
                         this->Tolerance(), "dbeta");
      }
    }
  }
}

// A warp per row takes rows * 32 threads, which passes 2^31 from 2^26 rows:
// with 32-bit index arithmetic the rows past that would stay uncomputed.
TYPED_TEST(TemperatureSoftmaxLayerTest, GpuComputesEveryRowPast2To26) {
  typedef typename TypeParam::Dtype Dtype;
  if (TypeParam::device != Caffe::GPU) GTEST_SKIP() << "GPU only";
  const int rows = (1 << 26) + 3;
  Blob<Dtype> x(vector<int>{rows, 2}), y;
  Dtype* data = x.mutable_cpu_data();
  for (int r = 0; r < rows; ++r) {
    data[2 * r] = static_cast<Dtype>(r % 7);
    data[2 * r + 1] = 0;
  }
  vector<Blob<Dtype>*> bottom{&x}, top{&y};
  TemperatureSoftmaxLayer<Dtype> layer(TemperatureSoftmaxParam(1));
  layer.SetUp(bottom, top);
  layer.Forward(bottom, top);
  const Dtype* out = y.cpu_data();
  int wrong = 0;
  for (int r = 0; r < rows; ++r) {
    const double expected = 1 / (1 + std::exp(-(r % 7)));
    if (!(std::abs(out[2 * r] - expected) <= 1e-5)) ++wrong;
  }
  EXPECT_EQ(wrong, 0) << "rows whose softmax is wrong or missing";
}

// Death tests fork; gtest runs suites named *DeathTest first.
template <typename TypeParam>
class TemperatureSoftmaxLayerDeathTest
    : public TemperatureSoftmaxLayerTest<TypeParam> {};

TYPED_TEST_SUITE(TemperatureSoftmaxLayerDeathTest, TestDtypesAndDevices);

TYPED_TEST(TemperatureSoftmaxLayerDeathTest, InPlaceWithBetaBottomRefused) {
  typedef typename TypeParam::Dtype Dtype;
  const LayerParameter param = TemperatureSoftmaxParam(1);
  this->Prepare({2, 6, 4}, 1, kShared);
  const vector<Blob<Dtype>*> top(1, &this->x_);
  TemperatureSoftmaxLayer<Dtype> layer(param);
  EXPECT_DEATH(layer.SetUp(this->bottom_, top),
               "TemperatureSoftmax layer 'tsm' runs in place with beta as "
               "bottom\\[1\\]: the gradient to beta needs the input");
}

TYPED_TEST(TemperatureSoftmaxLayerDeathTest, BadFillerBetaRefused) {
  typedef typename TypeParam::Dtype Dtype;
  const float kBad[] = {0, -0.5f, std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::quiet_NaN()};
  this->Prepare({2, 6, 4}, 1, kFiller);
  for (const float beta : kBad) {
    SCOPED_TRACE(::testing::Message() << "beta " << beta);
    LayerParameter param = TemperatureSoftmaxParam(1);
    SetFillerBeta(&param, beta);
    TemperatureSoftmaxLayer<Dtype> layer(param);
    EXPECT_DEATH(layer.SetUp(this->bottom_, this->top_),
                 "TemperatureSoftmax layer 'tsm': inverse temperature beta = "
                 ".* must be finite and > 0; give the inverse temperature "
                 "beta = 1/T as a constant filler, e.g. for T = 40: "
                 "scale_param \\{ filler \\{ type: \"constant\" "
                 "value: 0.025 \\} \\}");
  }
}

TYPED_TEST(TemperatureSoftmaxLayerDeathTest, NonConstantFillerRefused) {
  typedef typename TypeParam::Dtype Dtype;
  this->Prepare({2, 6, 4}, 1, kFiller);
  LayerParameter param = TemperatureSoftmaxParam(1);
  SetFillerBeta(&param, 0.5);
  param.mutable_scale_param()->mutable_filler()->set_type("gaussian");
  TemperatureSoftmaxLayer<Dtype> layer(param);
  EXPECT_DEATH(layer.SetUp(this->bottom_, this->top_),
               "TemperatureSoftmax layer 'tsm': scale_param.filler has type "
               "\"gaussian\", but the temperature must be a constant; give "
               "the inverse temperature beta = 1/T as a constant filler");
}

TYPED_TEST(TemperatureSoftmaxLayerDeathTest, BadBottomBetaRefused) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype kBad[] = {0, -1, std::numeric_limits<Dtype>::infinity(),
                        std::numeric_limits<Dtype>::quiet_NaN()};
  for (const Dtype beta : kBad) {
    SCOPED_TRACE(::testing::Message() << "beta " << beta);
    this->Prepare({3, 6, 4}, 1, kPerSample);
    this->beta_.mutable_cpu_data()[2] = beta;
    TemperatureSoftmaxLayer<Dtype> layer(TemperatureSoftmaxParam(1));
    layer.SetUp(this->bottom_, this->top_);
    EXPECT_DEATH(layer.Forward(this->bottom_, this->top_),
                 "TemperatureSoftmax layer 'tsm': inverse temperature "
                 "bottom\\[1\\]\\[2\\] = .* must be finite and > 0 "
                 "\\(beta = 1/T\\)");
  }
}

TYPED_TEST(TemperatureSoftmaxLayerDeathTest, WrongBetaCountRefused) {
  typedef typename TypeParam::Dtype Dtype;
  this->Prepare({3, 6, 4}, 1, kPerSample);
  this->beta_.Reshape(vector<int>(1, 5));
  TemperatureSoftmaxLayer<Dtype> layer(TemperatureSoftmaxParam(1));
  EXPECT_DEATH(layer.SetUp(this->bottom_, this->top_),
               "TemperatureSoftmax layer 'tsm': beta \\(bottom\\[1\\]\\) has "
               "5 values; expected 1 \\(shared\\), 3 \\(one per sample\\) or "
               "12 \\(one per position\\) for input shape 3 6 4 \\(72\\) and "
               "softmax axis 1");
}

}  // namespace caffe_temperature_test
