#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/filler.hpp"
#include "caffe/net.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe_temperature/reference_kernels.hpp"
#include "caffe_temperature/softmax_with_distillation_loss_layer.hpp"
#include "test_util.hpp"

namespace caffe_temperature_test {

using caffe::Blob;
using caffe::LayerParameter;
using caffe::LossParameter_NormalizationMode;
using caffe::SoftmaxWithDistillationLossLayer;
using caffe_temperature::SoftmaxShape;
using std::vector;

const LossParameter_NormalizationMode kModes[] = {
    caffe::LossParameter_NormalizationMode_FULL,
    caffe::LossParameter_NormalizationMode_VALID,
    caffe::LossParameter_NormalizationMode_BATCH_SIZE,
    caffe::LossParameter_NormalizationMode_NONE};
const int kIgnoreLabel = -1;

// The reference below is the plain kernel of reference_kernels.hpp, in
// double: T^2 KL(softmax(t / T) || softmax(s / T)) / norm.

// q = softmax(student / T) and each position's KL divergence (0 where the
// label is ignored), in double, from the blobs' values; returns the number
// of valid positions.
template <typename Dtype>
int ReferenceKl(const Blob<Dtype>& student, const Blob<Dtype>& teacher,
                const Blob<Dtype>* label, int axis, double temperature,
                vector<double>* q, vector<double>* kl) {
  const SoftmaxShape shape = ShapeOf(student, axis);
  const vector<double> s = InDouble(student.cpu_data(), student.count());
  const vector<double> t = InDouble(teacher.cpu_data(), teacher.count());
  vector<double> valid(shape.positions(), 1), p(s.size()), scratch;
  for (int pos = 0; label && pos < shape.positions(); ++pos) {
    valid[pos] = label->cpu_data()[pos] != kIgnoreLabel;
  }
  q->resize(s.size());
  kl->resize(shape.positions());
  caffe_temperature::reference::DistillationForwardCPU(
      shape, 1 / temperature, s.data(), t.data(), valid.data(), q->data(),
      p.data(), kl->data(), &scratch);
  return static_cast<int>(std::count(valid.begin(), valid.end(), 1.0));
}

template <typename Dtype>
double ReferenceLoss(const Blob<Dtype>& student, const Blob<Dtype>& teacher,
                     const Blob<Dtype>* label, int axis, double temperature,
                     LossParameter_NormalizationMode mode) {
  vector<double> q, kl;
  const int valid =
      ReferenceKl(student, teacher, label, axis, temperature, &q, &kl);
  const double sum = std::accumulate(kl.begin(), kl.end(), 0.0);
  return temperature * temperature * sum /
         ReferenceNormalizer(mode, ShapeOf(student, axis), valid);
}

LayerParameter DistillationParam(double beta, int axis,
                                 LossParameter_NormalizationMode mode,
                                 bool ignore) {
  LayerParameter param;
  param.set_name("distill");
  param.set_type("SoftmaxWithDistillationLoss");
  caffe::FillerParameter* filler =
      param.mutable_scale_param()->mutable_filler();
  filler->set_type("constant");
  filler->set_value(beta);
  param.mutable_softmax_param()->set_axis(axis);
  param.mutable_loss_param()->set_normalization(mode);
  if (ignore) param.mutable_loss_param()->set_ignore_label(kIgnoreLabel);
  return param;
}

template <typename TypeParam>
class SoftmaxWithDistillationLossLayerTest
    : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SoftmaxWithDistillationLossLayerTest()
      : student_(vector<int>{4, 5, 2, 3}), teacher_(vector<int>{4, 5, 2, 3}) {
    Caffe::set_random_seed(1701);
    FillLogits(3);
  }

  void FillLogits(double std) {
    caffe::FillerParameter filler_param;
    filler_param.set_std(std);
    caffe::GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(&student_);
    filler.Fill(&teacher_);
  }

  // One label per position for a softmax over `axis`, every third ignored.
  void FillLabels(int axis) {
    const SoftmaxShape g = ShapeOf(student_, axis);
    label_.Reshape(vector<int>(1, g.outer * g.inner));
    for (int j = 0; j < label_.count(); ++j) {
      label_.mutable_cpu_data()[j] =
          j % 3 == 0 ? kIgnoreLabel
                    : static_cast<int>(caffe::caffe_rng_rand() % g.channels);
    }
  }

  vector<Blob<Dtype>*> Bottoms(bool with_label) {
    vector<Blob<Dtype>*> bottom{&student_, &teacher_};
    if (with_label) bottom.push_back(&label_);
    return bottom;
  }

  // Loss after SetUp + Forward; the student's gradient for top_diff 1 when
  // `gradient` is given.
  Dtype Run(const LayerParameter& param, bool with_label,
            vector<Dtype>* gradient = NULL) {
    SoftmaxWithDistillationLossLayer<Dtype> layer(param);
    vector<Blob<Dtype>*> bottom = Bottoms(with_label);
    vector<Blob<Dtype>*> top{&loss_};
    layer.SetUp(bottom, top);
    const Dtype loss = layer.Forward(bottom, top);
    if (gradient) {
      vector<bool> propagate_down(bottom.size(), false);
      propagate_down[0] = true;
      layer.Backward(top, propagate_down, bottom);
      gradient->assign(student_.cpu_diff(),
                       student_.cpu_diff() + student_.count());
    }
    return loss;
  }

  Blob<Dtype> student_;
  Blob<Dtype> teacher_;
  Blob<Dtype> label_;
  Blob<Dtype> loss_;
};

TYPED_TEST_SUITE(SoftmaxWithDistillationLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestForwardMatchesReference) {
  typedef typename TypeParam::Dtype Dtype;
  const double beta = 0.4;
  for (int axis : {0, 1, -1}) {
    for (LossParameter_NormalizationMode mode : kModes) {
      for (bool with_label : {false, true}) {
        this->FillLabels(axis);
        const Dtype loss = this->Run(
            DistillationParam(beta, axis, mode, with_label), with_label);
        const double expected = ReferenceLoss(
            this->student_, this->teacher_, with_label ? &this->label_ : NULL,
            axis, 1 / beta, mode);
        EXPECT_GT(expected, 0.1);
        EXPECT_NEAR(loss, expected, 1e-4 * expected)
            << "axis " << axis << ", normalization "
            << caffe::LossParameter_NormalizationMode_Name(mode)
            << (with_label ? ", with ignored labels" : "");
      }
    }
  }
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestStudentProbTop) {
  typedef typename TypeParam::Dtype Dtype;
  const double beta = 0.25;
  SoftmaxWithDistillationLossLayer<Dtype> layer(DistillationParam(
      beta, 1, caffe::LossParameter_NormalizationMode_VALID, false));
  Blob<Dtype> prob;
  vector<Blob<Dtype>*> bottom = this->Bottoms(false);
  vector<Blob<Dtype>*> top{&this->loss_, &prob};
  layer.SetUp(bottom, top);
  layer.Forward(bottom, top);
  ASSERT_TRUE(prob.shape() == this->student_.shape());
  vector<double> q, kl;
  ReferenceKl<Dtype>(this->student_, this->teacher_, NULL, 1, 1 / beta, &q,
                     &kl);
  for (int k = 0; k < prob.count(); ++k) {
    EXPECT_NEAR(prob.cpu_data()[k], q[k], 1e-6) << "q[" << k << "]";
  }
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  for (int axis : {1, -1}) {
    this->FillLabels(axis);
    for (LossParameter_NormalizationMode mode : kModes) {
      LayerParameter param = DistillationParam(0.5, axis, mode, true);
      param.add_loss_weight(3);
      SoftmaxWithDistillationLossLayer<Dtype> layer(param);
      vector<Blob<Dtype>*> top{&this->loss_};
      caffe::GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
      checker.CheckGradientExhaustive(&layer, this->Bottoms(true), top, 0);
    }
  }
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestGradientWithoutLabels) {
  typedef typename TypeParam::Dtype Dtype;
  SoftmaxWithDistillationLossLayer<Dtype> layer(DistillationParam(
      2, 2, caffe::LossParameter_NormalizationMode_FULL, false));
  vector<Blob<Dtype>*> top{&this->loss_};
  caffe::GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->Bottoms(false), top, 0);
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestZeroWhenStudentIsTeacher) {
  typedef typename TypeParam::Dtype Dtype;
  this->teacher_.CopyFrom(this->student_);
  for (double beta : {4.0, 1.0, 0.05}) {
    vector<Dtype> gradient;
    const Dtype loss = this->Run(
        DistillationParam(beta, 1, caffe::LossParameter_NormalizationMode_VALID,
                          false),
        false, &gradient);
    EXPECT_NEAR(loss, 0, 1e-5) << "beta " << beta;
    for (Dtype g : gradient) EXPECT_NEAR(g, 0, 1e-6) << "beta " << beta;
  }
}

// With the T^2 factor, T (q - p) tends to ((s - mean s) - (t - mean t)) / C
// as T grows instead of vanishing like 1 / T (docs/spec.md, Hinton et al. 2015).
TYPED_TEST(SoftmaxWithDistillationLossLayerTest,
           TestGradientKeepsItsSizeAsTemperatureGrows) {
  typedef typename TypeParam::Dtype Dtype;
  const SoftmaxShape g = ShapeOf(this->student_, 1);
  const double norm = g.outer * g.inner;
  vector<double> limit(this->student_.count());
  for (int o = 0; o < g.outer; ++o) {
    for (int i = 0; i < g.inner; ++i) {
      double mean_s = 0, mean_t = 0;
      for (int c = 0; c < g.channels; ++c) {
        const int j = (o * g.channels + c) * g.inner + i;
        mean_s += this->student_.cpu_data()[j] / g.channels;
        mean_t += this->teacher_.cpu_data()[j] / g.channels;
      }
      for (int c = 0; c < g.channels; ++c) {
        const int j = (o * g.channels + c) * g.inner + i;
        limit[j] = ((this->student_.cpu_data()[j] - mean_s) -
                    (this->teacher_.cpu_data()[j] - mean_t)) /
                   (g.channels * norm);
      }
    }
  }
  double limit_norm = 0;
  for (double v : limit) limit_norm += v * v;
  limit_norm = std::sqrt(limit_norm);
  for (double temperature : {4.0, 16.0, 64.0, 1000.0}) {
    vector<Dtype> gradient;
    this->Run(DistillationParam(1 / temperature, 1,
                                caffe::LossParameter_NormalizationMode_VALID,
                                false),
              false, &gradient);
    double grad_norm = 0, error = 0;
    for (int j = 0; j < gradient.size(); ++j) {
      grad_norm += gradient[j] * gradient[j];
      error += (gradient[j] - limit[j]) * (gradient[j] - limit[j]);
    }
    grad_norm = std::sqrt(grad_norm);
    EXPECT_GT(grad_norm, 0.5 * limit_norm) << "T " << temperature;
    EXPECT_LT(grad_norm, 1.5 * limit_norm) << "T " << temperature;
    if (temperature >= 1000) {
      EXPECT_LT(std::sqrt(error), 0.01 * limit_norm);
    }
  }
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest,
           TestLargeLogitsAndSmallTemperature) {
  typedef typename TypeParam::Dtype Dtype;
  this->FillLogits(1000);
  this->FillLabels(1);
  const double temperature = 0.01;
  vector<Dtype> gradient;
  const Dtype loss = this->Run(
      DistillationParam(1 / temperature, 1,
                        caffe::LossParameter_NormalizationMode_VALID, true),
      true, &gradient);
  const double expected =
      ReferenceLoss(this->student_, this->teacher_, &this->label_, 1,
                    temperature, caffe::LossParameter_NormalizationMode_VALID);
  ASSERT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, expected, 1e-4 * expected);
  // |T (q - p) / norm| <= T / norm, whatever the logits.
  const int valid = std::count_if(
      this->label_.cpu_data(), this->label_.cpu_data() + this->label_.count(),
      [](Dtype l) { return l != kIgnoreLabel; });
  for (Dtype d : gradient) {
    ASSERT_TRUE(std::isfinite(d));
    EXPECT_LE(std::fabs(d), temperature / valid);
  }
}

// No position (N = 0): the loss is 0, and no empty blob is read or written
// (stock Caffe gives a blob no memory until it has held a value).
TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestNoPosition) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> student(vector<int>{0, 5}), teacher(vector<int>{0, 5});
  Blob<Dtype> label(vector<int>(1, 0));
  const vector<Blob<Dtype>*> bottom{&student, &teacher, &label};
  const vector<Blob<Dtype>*> top{&this->loss_};
  SoftmaxWithDistillationLossLayer<Dtype> layer(DistillationParam(
      0.5, 1, caffe::LossParameter_NormalizationMode_VALID, true));
  layer.SetUp(bottom, top);
  EXPECT_EQ(layer.Forward(bottom, top), Dtype(0));
  layer.Backward(top, vector<bool>{true, false, false}, bottom);
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestBadTemperatureDies) {
  const LossParameter_NormalizationMode mode =
      caffe::LossParameter_NormalizationMode_VALID;
  EXPECT_DEATH(this->Run(DistillationParam(0, 1, mode, false), false),
               "'distill': inverse temperature beta = 0 must be finite and "
               "> 0.*value: 0.025");
  EXPECT_DEATH(this->Run(DistillationParam(-2, 1, mode, false), false),
               "beta = -2 must be finite and > 0");
  EXPECT_DEATH(
      this->Run(DistillationParam(std::numeric_limits<float>::infinity(), 1,
                                  mode, false),
                false),
      "beta = inf must be finite and > 0");
  LayerParameter gaussian = DistillationParam(0.5, 1, mode, false);
  gaussian.mutable_scale_param()->mutable_filler()->set_type("gaussian");
  EXPECT_DEATH(this->Run(gaussian, false),
               "has type \"gaussian\", but the temperature must be a "
               "constant");
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestShapeMismatchDies) {
  this->teacher_.Reshape(vector<int>{4, 5, 2, 2});
  EXPECT_DEATH(
      this->Run(DistillationParam(
                    1, 1, caffe::LossParameter_NormalizationMode_VALID, false),
                false),
      "'distill': student \\(bottom\\[0\\]\\) has shape 4 5 2 3 \\(120\\) "
      "but teacher \\(bottom\\[1\\]\\) has shape 4 5 2 2 \\(80\\)");
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestBadLabelsDie) {
  typedef typename TypeParam::Dtype Dtype;
  const LayerParameter param = DistillationParam(
      1, 1, caffe::LossParameter_NormalizationMode_VALID, true);
  this->FillLabels(1);
  this->label_.mutable_cpu_data()[7] = 5;
  EXPECT_DEATH(this->Run(param, true),
               "label \\(bottom\\[2\\]\\) at position 7 \\(sample 1, index 1\\)"
               " is 5; expected an integer in \\[0, 5\\) or ignore_label");
  this->label_.mutable_cpu_data()[7] = 2.5;
  EXPECT_DEATH(this->Run(param, true), "at position 7 .* is 2.5;");
  std::replace(this->label_.mutable_cpu_data(),
               this->label_.mutable_cpu_data() + this->label_.count(),
               static_cast<Dtype>(kIgnoreLabel), Dtype(0));
  this->label_.mutable_cpu_data()[7] = -1;
  EXPECT_DEATH(
      this->Run(DistillationParam(
                    1, 1, caffe::LossParameter_NormalizationMode_VALID, false),
                true),
      "at position 7 .* is -1; expected an integer in \\[0, 5\\)\n");
  this->label_.Reshape(vector<int>{4, 5});
  EXPECT_DEATH(this->Run(param, true),
               "must hold one label per position, i.e. 24 values");
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest,
           TestIgnoreLabelWithoutLabelBottomDies) {
  EXPECT_DEATH(
      this->Run(DistillationParam(
                    1, 1, caffe::LossParameter_NormalizationMode_VALID, true),
                false),
      "loss_param.ignore_label = -1 needs the label bottom "
      "\\(bottom\\[2\\]\\)");
}

TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestGradientToTeacherDies) {
  typedef typename TypeParam::Dtype Dtype;
  SoftmaxWithDistillationLossLayer<Dtype> layer(DistillationParam(
      1, 1, caffe::LossParameter_NormalizationMode_VALID, false));
  vector<Blob<Dtype>*> bottom = this->Bottoms(false);
  vector<Blob<Dtype>*> top{&this->loss_};
  layer.SetUp(bottom, top);
  layer.Forward(bottom, top);
  EXPECT_DEATH(layer.Backward(top, vector<bool>{true, true}, bottom),
               "cannot backpropagate to the teacher \\(bottom\\[1\\]\\).*"
               "'propagate_down: true propagate_down: false'");
}

caffe::NetParameter ParseNet(const std::string& text) {
  caffe::NetParameter param;
  CHECK(google::protobuf::TextFormat::ParseFromString(text, &param));
  return param;
}

const char kInputs[] =
    "layer { name: 'input' type: 'Input' top: 'student' top: 'teacher' "
    "  top: 'label' input_param { shape { dim: 3 dim: 4 } "
    "  shape { dim: 3 dim: 4 } shape { dim: 3 } } } ";

// force_backward must reach the student and leave teacher and labels alone.
TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestForceBackwardNet) {
  typedef typename TypeParam::Dtype Dtype;
  caffe::Net<Dtype> net(ParseNet(
      std::string("force_backward: true ") + kInputs +
      "layer { name: 'distill' type: 'SoftmaxWithDistillationLoss' "
      "  bottom: 'student' bottom: 'teacher' bottom: 'label' top: 'loss' "
      "  scale_param { filler { type: 'constant' value: 0.5 } } "
      "  loss_param { ignore_label: -1 } }"));
  EXPECT_EQ(net.bottom_need_backward()[1], (vector<bool>{true, false, false}));
  caffe::GaussianFiller<Dtype> filler{caffe::FillerParameter()};
  filler.Fill(net.blob_by_name("student").get());
  filler.Fill(net.blob_by_name("teacher").get());
  Dtype* label = net.blob_by_name("label")->mutable_cpu_data();
  label[0] = 3;
  label[1] = -1;
  label[2] = 0;
  net.Forward();
  net.Backward();
  const Blob<Dtype>& student = *net.blob_by_name("student");
  const Blob<Dtype>& teacher = *net.blob_by_name("teacher");
  for (int c = 0; c < 4; ++c) {
    EXPECT_NE(student.cpu_diff()[c], 0);
    EXPECT_EQ(student.cpu_diff()[4 + c], 0) << "ignored sample";
    EXPECT_EQ(teacher.cpu_diff()[c], 0);
  }
}

// A teacher computed in the same net needs propagate_down: false, and the
// layer says so instead of silently training the teacher.
TYPED_TEST(SoftmaxWithDistillationLossLayerTest, TestTeacherInTheSameNet) {
  typedef typename TypeParam::Dtype Dtype;
  const std::string teacher_net = std::string(kInputs) +
      "layer { name: 'teacher_fc' type: 'InnerProduct' bottom: 'teacher' "
      "  top: 'teacher_logits' inner_product_param { num_output: 4 "
      "  weight_filler { type: 'gaussian' std: 1 } } } "
      "layer { name: 'distill' type: 'SoftmaxWithDistillationLoss' "
      "  bottom: 'student' bottom: 'teacher_logits' top: 'loss' ";
  caffe::Net<Dtype> fixed_teacher(ParseNet(
      teacher_net + "propagate_down: true propagate_down: false }"));
  fixed_teacher.Forward();
  fixed_teacher.Backward();
  const Blob<Dtype>& weights = *fixed_teacher.layer_by_name("teacher_fc")
                                    ->blobs()[0];
  for (int j = 0; j < weights.count(); ++j) EXPECT_EQ(weights.cpu_diff()[j], 0);

  caffe::Net<Dtype> trained_teacher(ParseNet(teacher_net + "}"));
  trained_teacher.Forward();
  EXPECT_DEATH(trained_teacher.Backward(),
               "cannot backpropagate to the teacher.*add 'propagate_down: "
               "true propagate_down: false' to this layer");
}

}  // namespace caffe_temperature_test
