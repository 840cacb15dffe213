// SPDX-License-Identifier: Apache-2.0
// Every invalid argument of the attention entry points throws std::invalid_argument naming the
// parameter and its value; nothing is written.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

struct Buffers {
  std::vector<float> q = std::vector<float>(2 * 4 * 10 * 8, 0.5f), k = std::vector<float>(2 * 2 * 12 * 8, 0.5f),
                     v = std::vector<float>(2 * 2 * 12 * 6, 0.5f), out = std::vector<float>(2 * 4 * 10 * 6, 7.0f),
                     lse = std::vector<float>(2 * 4 * 10, 7.0f);
  sa::TensorView<const float> qv() const { return sa::bhsd<const float>(q.data(), 2, 4, 10, 8); }
  sa::TensorView<const float> kv() const { return sa::bhsd<const float>(k.data(), 2, 2, 12, 8); }
  sa::TensorView<const float> vv() const { return sa::bhsd<const float>(v.data(), 2, 2, 12, 6); }
  sa::TensorView<float> ov() { return sa::bhsd(out.data(), 2, 4, 10, 6); }
};

struct BadCase {
  const char* name;
  std::function<void(Buffers&)> call;
  const char* message;  // must appear in what()
};

void run(const sa::TensorView<const float>& q, const sa::TensorView<const float>& k,
         const sa::TensorView<const float>& v, const sa::TensorView<float>& out,
         const sa::AttentionOptions<float>& options = {}) {
  sa::attention<float>(q, k, v, out, sa::Causal{}, options);
}

TEST(Validation, EveryBadArgumentIsNamed) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<BadCase> cases = {
      {"null q", [](Buffers& b) { run(sa::bhsd<const float>(nullptr, 2, 4, 10, 8), b.kv(), b.vv(), b.ov()); }, "q.data = null"},
      {"null k", [](Buffers& b) { run(b.qv(), sa::bhsd<const float>(nullptr, 2, 2, 12, 8), b.vv(), b.ov()); }, "k.data = null"},
      {"null v", [](Buffers& b) { run(b.qv(), b.kv(), sa::bhsd<const float>(nullptr, 2, 2, 12, 6), b.ov()); }, "v.data = null"},
      {"null out", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), sa::bhsd<float>(nullptr, 2, 4, 10, 6)); }, "out.data = null"},
      {"null lse", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), b.ov(), {.lse = sa::lse_bhs<float>(nullptr, 2, 4, 10)}); }, "lse.data = null"},
      {"batch mismatch", [](Buffers& b) { run(b.qv(), sa::bhsd<const float>(b.k.data(), 1, 2, 12, 8), b.vv(), b.ov()); }, "k shape = [1, 2, 12, 8]"},
      {"head_dim mismatch", [](Buffers& b) { run(b.qv(), sa::bhsd<const float>(b.k.data(), 2, 2, 12, 7), b.vv(), b.ov()); }, "k shape = [2, 2, 12, 7]"},
      {"k/v length mismatch", [](Buffers& b) { run(b.qv(), b.kv(), sa::bhsd<const float>(b.v.data(), 2, 2, 11, 6), b.ov()); }, "v shape = [2, 2, 11, 6]"},
      {"k/v heads mismatch", [](Buffers& b) { run(b.qv(), b.kv(), sa::bhsd<const float>(b.v.data(), 2, 1, 12, 6), b.ov()); }, "v shape = [2, 1, 12, 6]"},
      {"out shape", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), sa::bhsd(b.out.data(), 2, 4, 10, 5)); }, "out shape = [2, 4, 10, 5]"},
      {"lse shape", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), b.ov(), {.lse = sa::lse_bhs(b.lse.data(), 2, 4, 9)}); }, "lse shape = [2, 4, 9]"},
      {"Hq % Hkv", [](Buffers& b) { run(b.qv(), sa::bhsd<const float>(b.k.data(), 2, 3, 8, 8), sa::bhsd<const float>(b.v.data(), 2, 3, 8, 6), b.ov()); }, "q heads / k heads = 4 / 3"},
      {"zero q heads", [](Buffers& b) { run(sa::bhsd<const float>(b.q.data(), 2, 0, 10, 8), b.kv(), b.vv(), sa::bhsd(b.out.data(), 2, 0, 10, 6)); }, "q heads (q.extent(1)) = 0"},
      {"zero head_dim", [](Buffers& b) { run(sa::bhsd<const float>(b.q.data(), 2, 4, 10, 0), sa::bhsd<const float>(b.k.data(), 2, 2, 12, 0), b.vv(), b.ov()); }, "head_dim (q.extent(3)) = 0"},
      {"NaN scale", [nan](Buffers& b) { run(b.qv(), b.kv(), b.vv(), b.ov(), {.scale = nan}); }, "scale = nan"},
      {"infinite scale", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), b.ov(), {.scale = std::numeric_limits<double>::infinity()}); }, "scale = inf"},
      {"negative threads", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), b.ov(), {.num_threads = -1}); }, "num_threads = -1"},
      {"overlapping out", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), sa::TensorView<float>(b.out.data(), {2, 4, 10, 6}, {0, 0, 6, 1})); }, "out strides = [0, 0, 6, 1]"},
      {"overlapping lse", [](Buffers& b) { run(b.qv(), b.kv(), b.vv(), b.ov(), {.lse = sa::LseView<float>(b.lse.data(), {2, 4, 10}, {0, 10, 1})}); }, "lse strides = [0, 10, 1]"},
      {"layout lengths", [](Buffers& b) { sa::attention<float>(b.qv(), b.kv(), b.vv(), b.ov(), sa::Causal{}, sa::BlockLayout::build(sa::Causal{}, {10, 10})); }, "layout extent = {seq_q 10, seq_k 10}"},
  };
  for (const BadCase& c : cases) {
    Buffers b;
    try {
      c.call(b);
      ADD_FAILURE() << c.name << ": no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << c.name << ": " << e.what();
    }
    for (float x : b.out) ASSERT_EQ(7.0f, x) << c.name << ": output written before the error";
    for (float x : b.lse) ASSERT_EQ(7.0f, x) << c.name << ": lse written before the error";
  }
}

TEST(Validation, ViewsRejectNegativeExtentsAndStrides) {
  float x = 0;
  EXPECT_THROW(sa::bhsd(&x, 1, 1, -1, 1), std::invalid_argument);
  EXPECT_THROW(sa::TensorView<float>(&x, {1, 1, 1, 1}, {1, 1, -1, 1}), std::invalid_argument);
  EXPECT_THROW(sa::TensorView<float>(&x, {1, 1, sa::Index{1} << 40, 4}, {0, 0, sa::Index{1} << 40, 1}),
               std::invalid_argument);
}

TEST(Validation, EmptyProblemsAreAccepted) {
  std::vector<float> q(8), k(8), v(8), out(8);
  EXPECT_NO_THROW(run(sa::bhsd<const float>(nullptr, 0, 1, 4, 2), sa::bhsd<const float>(nullptr, 0, 1, 4, 2),
                      sa::bhsd<const float>(nullptr, 0, 1, 4, 2), sa::bhsd<float>(nullptr, 0, 1, 4, 2)));
  EXPECT_NO_THROW(run(sa::bhsd<const float>(q.data(), 1, 1, 0, 2), sa::bhsd<const float>(k.data(), 1, 1, 4, 2),
                      sa::bhsd<const float>(v.data(), 1, 1, 4, 2), sa::bhsd<float>(out.data(), 1, 1, 0, 2)));
}

struct PerHead {
  bool head_dependent() const { return true; }
  bool allowed(const sa::Extent&, sa::Index, sa::Index j, sa::Index h) const { return j % 2 == h % 2; }
  sa::BlockClass classify(const sa::BlockGrid&, sa::Index, sa::Index, sa::Index) const { return sa::BlockClass::kPartial; }
  void for_each_block(const sa::BlockGrid& g, sa::Index, sa::Index, auto&& visit) const {
    for (sa::Index kb = 0; kb < g.kv_blocks(); ++kb) visit(kb, sa::BlockClass::kPartial);
  }
};

TEST(Validation, HeadDependentPolicyNeedsPerHeadLayout) {
  Buffers b;
  const sa::BlockLayout broadcast = sa::BlockLayout::build(sa::Causal{}, {10, 12});
  EXPECT_THROW(sa::attention<float>(b.qv(), b.kv(), b.vv(), b.ov(), PerHead{}, broadcast), std::invalid_argument);
  const sa::BlockLayout wrong_heads = sa::BlockLayout::build(PerHead{}, {10, 12}, {}, 2);
  EXPECT_THROW(sa::attention<float>(b.qv(), b.kv(), b.vv(), b.ov(), PerHead{}, wrong_heads), std::invalid_argument);
  const sa::BlockLayout right = sa::BlockLayout::build(PerHead{}, {10, 12}, {}, 4);
  EXPECT_NO_THROW(sa::attention<float>(b.qv(), b.kv(), b.vv(), b.ov(), PerHead{}, right));
}

}  // namespace
