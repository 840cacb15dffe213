// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

TEST(TensorView, BhsdAddressesContiguousBatchHeadSeqDim) {
  std::vector<int> x(2 * 3 * 4 * 5);
  std::iota(x.begin(), x.end(), 0);
  const auto v = sa::bhsd(x.data(), 2, 3, 4, 5);
  EXPECT_EQ(((1 * 3 + 2) * 4 + 3) * 5 + 4, v(1, 2, 3, 4));
  EXPECT_EQ(120, v.size());
}

TEST(TensorView, BshdIsViewedAsBatchHeadSeqDim) {
  std::vector<int> x(2 * 4 * 3 * 5);  // memory order [batch, seq, heads, dim]
  std::iota(x.begin(), x.end(), 0);
  const auto v = sa::bshd(x.data(), 2, 4, 3, 5);
  EXPECT_EQ(3, v.extent(1));  // heads
  EXPECT_EQ(4, v.extent(2));  // seq
  // logical (b=1, h=2, s=3, d=4) lives at memory [1, 3, 2, 4]
  EXPECT_EQ(((1 * 4 + 3) * 3 + 2) * 5 + 4, v(1, 2, 3, 4));
}

TEST(TensorView, LseLayouts) {
  std::vector<float> x(2 * 3 * 4);
  std::iota(x.begin(), x.end(), 0.0f);
  EXPECT_EQ((1 * 3 + 2) * 4 + 3, sa::lse_bhs(x.data(), 2, 3, 4)(1, 2, 3));
  EXPECT_EQ((1 * 4 + 3) * 3 + 2, sa::lse_bsh(x.data(), 2, 4, 3)(1, 2, 3));
}

TEST(TensorView, ConvertsToConst) {
  std::vector<double> x(6, 1.0);
  const sa::TensorView<double> mutable_view = sa::bhsd(x.data(), 1, 1, 2, 3);
  const sa::TensorView<const double> const_view = mutable_view;
  EXPECT_EQ(mutable_view.data(), const_view.data());
  EXPECT_EQ(mutable_view.strides(), const_view.strides());
}

TEST(TensorView, EigenInteropBothWays) {
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row_major(3, 4);
  Eigen::MatrixXf col_major(3, 4);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) row_major(i, j) = col_major(i, j) = static_cast<float>(10 * i + j);
  const auto a = sa::head_view(row_major);
  const auto b = sa::head_view(col_major);
  EXPECT_EQ(1, a.stride(3));
  EXPECT_EQ(3, b.stride(3));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(row_major(i, j), a(0, 0, i, j));
      EXPECT_EQ(col_major(i, j), b(0, 0, i, j));
    }
  // And back: one (batch, head) slice of a BSHD buffer as an Eigen matrix.
  std::vector<float> x(2 * 5 * 3 * 4);
  std::iota(x.begin(), x.end(), 0.0f);
  const auto v = sa::bshd(x.data(), 2, 5, 3, 4);
  const auto m = v.matrix(1, 2);
  EXPECT_EQ(5, m.rows());
  EXPECT_EQ(4, m.cols());
  EXPECT_EQ(v(1, 2, 4, 3), m(4, 3));
  const Eigen::MatrixXf copy = m;
  EXPECT_EQ(v(1, 2, 0, 1), copy(0, 1));
  const Eigen::MatrixXf& const_ref = col_major;
  EXPECT_EQ(col_major(2, 3), sa::head_view(const_ref)(0, 0, 2, 3));
}

}  // namespace
