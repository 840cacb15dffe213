// SPDX-License-Identifier: Apache-2.0
// The vector exp2 of the softmax (AVX-512 or AVX2, whichever this build targets) against std::exp2 in
// double, at the edges of its range: no lane may compute a subnormal or raise the underflow flag
// (Intel cores take a microcode assist for each, and every masked score went through one).
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include "sparse_attention/kernel/simd.hpp"

#if SPARSE_ATTENTION_SIMD_WIDTH > 0

namespace simd = sparse_attention::detail::simd;

namespace {

template <class T>
class SimdExp2Test : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SimdExp2Test, Scalars);

// The bottom of T's normal range, in powers of two: exp2 flushes what lies below it.
template <class T>
constexpr T kLowest = std::is_same_v<T, float> ? T(-126) : T(-1022);

// Arguments around the bottom of the normal range (where the old clamp produced subnormals), through
// the ordinary range of softmax exponents, plus the special values.
template <class T>
std::vector<T> arguments() {
  const T lowest = kLowest<T>;
  std::vector<T> x;
  for (T base : {lowest - 30, lowest - 1, lowest, T(-60), T(-1), T(0), T(20)})
    for (int i = -40; i <= 40; ++i) x.push_back(base + T(i) / T(16));
  for (T e : {lowest - T(0.3), lowest - T(0.5), lowest + T(0.3), lowest + T(0.5), lowest - T(1e-3), lowest + T(1e-3)})
    x.push_back(e);
  x.push_back(-std::numeric_limits<T>::infinity());
  x.push_back(-std::numeric_limits<T>::max());
  x.push_back(T(-0.0));
  x.push_back(std::numeric_limits<T>::quiet_NaN());
  while (x.size() % simd::Vec<T>::kLanes != 0) x.push_back(T(0));
  return x;
}

TYPED_TEST(SimdExp2Test, MatchesStdExp2AndFlushesBelowTheNormalRange) {
  using T = TypeParam;
  using V = simd::Vec<T>;
  const std::vector<T> x = arguments<T>();
  std::vector<T> y(x.size());
  std::feclearexcept(FE_ALL_EXCEPT);
  for (std::size_t i = 0; i < x.size(); i += V::kLanes) simd::exp2(V::load(x.data() + i)).store(y.data() + i);
  EXPECT_FALSE(std::fetestexcept(FE_UNDERFLOW)) << "a lane underflowed";
  const T lowest = kLowest<T>;
  // The polynomial's error: a few units in the last place of T.
  const double tolerance = 8 * static_cast<double>(std::numeric_limits<T>::epsilon());
  for (std::size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "x = " << x[i]);
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i]));
      continue;
    }
    EXPECT_FALSE(std::fpclassify(y[i]) == FP_SUBNORMAL) << y[i];
    if (x[i] < lowest) {
      EXPECT_EQ(y[i], T(0));
      EXPECT_FALSE(std::signbit(y[i]));
    } else {
      const double want = std::exp2(static_cast<double>(x[i]));
      EXPECT_LE(std::fabs(static_cast<double>(y[i]) - want), tolerance * want) << y[i] << " vs " << want;
    }
  }
}

}  // namespace

#endif  // SPARSE_ATTENTION_SIMD_WIDTH > 0
