// SPDX-License-Identifier: Apache-2.0
// Every invalid argument of the policies, the layout and the dynamic entry points throws
// std::invalid_argument naming where, the parameter and its value (the kernel's own arguments are
// in kernel/validation_test.cpp). Each message is listed in docs/validation.md; this test keeps the
// list honest.
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dynamic/dsa_common.hpp"
#include "support/test_support.hpp"

namespace sa = sparse_attention;
using sa::testing::Problem;
using sa::testing::Shape;

namespace {

struct BadCase {
  std::function<void()> call;
  std::string message;  // must appear in what(), after "sparse_attention::"
};

template <class P>
void layout(const P& policy, sa::Extent x, sa::Index heads = 1) {
  (void)sa::BlockLayout::build(policy, x, {16, 16}, heads);
}

std::vector<BadCase> cases() {
  using V = std::vector<sa::Index>;
  using Table = std::vector<std::vector<std::vector<sa::Index>>>;
  static const Problem<float> p(Shape{2, 4, 2, 40, 40, 8, 8, false}, 1);
  static const Problem<float> longer_q(Shape{1, 2, 1, 50, 40, 8, 8, false}, 2);
  static const sa::testing::IndexerInputs<float> ix(2, 40, 40, 3, 8, 3);
  static const sa::TokenTopK sel = sa::lightning_top_k<float>(ix.qv(), ix.kv(), ix.wv(), 5);
  static std::vector<float> out(static_cast<std::size_t>(p.out_size()));
  static std::vector<std::int32_t> lists(2 * 40 * 3, -1);
  auto run_selection = [](const sa::TokenTopK& s, int threads = 0, sa::SelectionPath path = sa::SelectionPath::kAuto) {
    sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(out), s, {.num_threads = threads}, path);
  };
  auto indexer = [](sa::TensorView<const float> q, sa::TensorView<const float> k, sa::StridedView<const float, 3> w,
                    sa::Index top_k, int threads = 0) {
    (void)sa::lightning_top_k<float>(q, k, w, top_k, {.num_threads = threads});
  };
  auto loss = [](sa::TensorView<const float> q, sa::TensorView<const float> k, sa::TensorView<const float> iq,
                 sa::TensorView<const float> ik, sa::StridedView<const float, 3> w, sa::IndexerLossOptions o = {}) {
    (void)sa::indexer_kl_loss<float>(q, k, iq, ik, w, o);
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  return {
      // Policies.
      {[] { sa::LocalWindow(-2, 0); }, "LocalWindow: left = -2"},
      {[] { sa::LocalWindow(0, -5); }, "LocalWindow: right = -5"},
      {[] { sa::LocalWindow::causal(0); }, "LocalWindow::causal: window = 0"},
      {[] { sa::LocalWindow::symmetric(-3); }, "LocalWindow::symmetric: w = -3"},
      {[] { sa::Strided(0); }, "Strided: stride = 0"},
      {[] { sa::Fixed(0, 1); }, "Fixed: window = 0"},
      {[] { sa::Fixed(8, 9); }, "Fixed: summary = 9"},
      {[] { sa::Fixed(8, 0); }, "Fixed: summary = 0"},
      {[] { sa::Fixed(8, 2, true, {0, 7}); }, "Fixed: offsets[1] = 7"},
      {[] { sa::Fixed::sparse_transformer(8, 2, 0); }, "Fixed::sparse_transformer: patterns = 0"},
      {[] { sa::Fixed::sparse_transformer(8, 3, 4); }, "Fixed::sparse_transformer: patterns * summary = 12"},
      {[] { sa::Longformer(-1, {}); }, "Longformer: window = -1"},
      {[] { sa::Longformer(4, {5, -1}); }, "Longformer: globals = -1"},
      {[] { sa::Longformer(4, {3, 9, 3}); }, "Longformer: globals = 3"},
      {[] { layout(sa::Longformer(4, {0, 64}), {64, 64}); }, "Longformer: globals = 64"},
      {[] { sa::Longformer::from_hugging_face(5, {}); }, "Longformer::from_hugging_face: attention_window = 5"},
      {[] { sa::BigBird(0, 1, 1, 1); }, "BigBird: block = 0"},
      {[] { sa::BigBird(16, -1, 1, 1); }, "BigBird: global_blocks = -1"},
      {[] { sa::BigBird(16, 1, -1, 1); }, "BigBird: random_blocks = -1"},
      {[] { layout(sa::BigBird(16, 1, 4, 1), {128, 128}); }, "BigBird: random_blocks = 4"},
      {[] { sa::BigBird::from_table(16, 1, {}); }, "BigBird::from_table: table heads = 0"},
      {[] { layout(sa::BigBird::from_table(16, 1, Table(3, std::vector<V>(8))), {128, 128}, 2); }, "BigBird: table heads = 3"},
      {[] { layout(sa::BigBird::from_table(16, 1, Table(1, std::vector<V>(7))), {128, 128}); }, "BigBird: table rows of head 0 = 7"},
      {[] { layout(sa::BigBird::from_table(16, 1, Table(1, std::vector<V>(8, V{3, 8}))), {128, 128}); }, "BigBird: table block = 8"},
      {[] { sa::Segments(V{0, 0, 1, 1, 0}); }, "Segments: ids[4] = 0"},
      {[] { layout(sa::Segments(V{0, 0, 1}), {4, 4}); }, "Segments: ids length = 3"},
      {[] { sa::BlockMask::from_bitmap({1, 0, 1}, 1, 2, 2, {8, 8}); }, "BlockMask::from_bitmap: bits size = 3"},
      {[] { sa::BlockMask::from_bitmap({}, 0, 2, 2, {8, 8}); }, "BlockMask: heads = 0"},
      {[] { sa::BlockMask::from_bitmap({}, 1, -1, 2, {8, 8}); }, "BlockMask: q_blocks = -1"},
      {[] { sa::BlockMask::from_bitmap({}, 1, 2, -2, {8, 8}); }, "BlockMask: kv_blocks = -2"},
      {[] { sa::BlockMask::from_bitmap({1, 1, 1, 1}, 1, 2, 2, {0, 8}); }, "BlockMask: block.q = 0"},
      {[] { sa::BlockMask::from_bitmap({1, 1, 1, 1}, 1, 2, 2, {8, 0}); }, "BlockMask: block.kv = 0"},
      {[] { sa::BlockMask::from_rows({0, 1}, {0}, 1, 2, 2, {8, 8}); }, "BlockMask::from_rows: row_begin size = 2"},
      {[] { sa::BlockMask::from_rows({1, 1, 1}, {0}, 1, 2, 2, {8, 8}); }, "BlockMask::from_rows: row_begin[0] = 1"},
      {[] { sa::BlockMask::from_rows({0, 1, 3}, {0, 1}, 1, 2, 2, {8, 8}); }, "BlockMask::from_rows: row_begin[last] = 3"},
      {[] { sa::BlockMask::from_rows({0, 2, 1}, {0}, 1, 2, 2, {8, 8}); }, "BlockMask::from_rows: row_begin[2] = 1"},
      {[] { sa::BlockMask::from_rows({0, 2, 2}, {1, 0}, 1, 2, 2, {8, 8}); }, "BlockMask::from_rows: columns[1] = 0"},
      {[] { sa::BlockMask::from_rows({0, 1, 1}, {2}, 1, 2, 2, {8, 8}); }, "BlockMask::from_rows: columns[0] = 2"},
      {[] { layout(sa::BlockMask::from_bitmap({1, 1, 1, 1}, 1, 2, 2, {8, 8}), {24, 24}); }, "BlockMask: q_blocks = 2"},
      {[] { layout(sa::BlockMask::from_bitmap(std::vector<std::uint8_t>(12, 1), 3, 2, 2, {8, 8}), {16, 16}, 2); }, "BlockMask: heads = 3"},
      // Layouts and grids.
      {[] { layout(sa::Causal{}, {8, 8}, 0); }, "BlockLayout::build: num_heads = 0"},
      {[] { (void)sa::BlockLayout::build(sa::Causal{}, {8, 8}, {0, 16}); }, "BlockGrid: block.q = 0"},
      {[] { (void)sa::BlockLayout::build(sa::Causal{}, {8, 8}, {16, -4}); }, "BlockGrid: block.kv = -4"},
      {[] { (void)sa::BlockLayout::build(sa::Causal{}, {-1, 8}); }, "BlockGrid: seq_q = -1"},
      {[] { (void)sa::BlockLayout::build(sa::Causal{}, {8, sa::Index{1} << 41}); }, "BlockGrid: seq_k = 2199023255552"},
      {[] { (void)sa::BlockLayout::build(sa::Causal{}, {8, 8}).to_string(1); }, "BlockLayout::to_string: h = 1"},
      {[] { (void)sa::BlockLayout::build(sa::Causal{}, {8, 8}).to_string(0, 0); }, "BlockLayout::to_string: max_cells = 0"},
      // Token selections.
      {[] { (void)sa::TokenTopK::from_indices(lists, 2, 1, 40, 0, 40); }, "TokenTopK::from_indices: k = 0"},
      {[] { (void)sa::TokenTopK::from_indices(lists, 2, 0, 40, 3, 40); }, "TokenTopK::from_indices: groups = 0"},
      {[] { (void)sa::TokenTopK::from_indices(lists, -1, 1, 40, 3, 40); }, "TokenTopK::from_indices: batch = -1"},
      {[] { (void)sa::TokenTopK::from_indices(lists, 2, 1, 40, 3, sa::Index{1} << 31); }, "TokenTopK::from_indices: seq_k = 2147483648"},
      {[] { (void)sa::TokenTopK::from_indices(lists, 2, 1, 40, 2, 40); }, "TokenTopK::from_indices: indices size = 240"},
      {[] { std::vector<std::int32_t> l(2 * 40 * 3, -1); l[4] = 40; (void)sa::TokenTopK::from_indices(l, 2, 1, 40, 3, 40); }, "TokenTopK::from_indices: indices[0, 0, 1, 1] = 40"},
      {[] { std::vector<std::int32_t> l(2 * 40 * 3, -1); l[3] = -7; (void)sa::TokenTopK::from_indices(l, 2, 1, 40, 3, 40); }, "TokenTopK::from_indices: indices[0, 0, 1, 0] = -7"},
      {[] { std::vector<std::int32_t> l(2 * 40 * 3, -1); l[3] = 5; l[5] = 5; (void)sa::TokenTopK::from_indices(l, 2, 1, 40, 3, 40); }, "TokenTopK::from_indices: indices[0, 0, 1, 0 ..] = 5"},
      {[] { (void)sel.mask(2, 4); }, "TokenTopK::mask: b = 2"},
      {[] { (void)sa::lightning_top_k<float>(ix.qv(), ix.kv(), ix.wv(), 5).mask(0, 0); }, "TokenTopK::mask: q_heads = 0"},
      {[=] { run_selection(sa::TokenTopK::from_indices(std::vector<std::int32_t>(40 * 3, -1), 1, 1, 40, 3, 40)); }, "attention (token selection): selection batch = 1"},
      {[=] { run_selection(sa::TokenTopK::from_indices(std::vector<std::int32_t>(2 * 39 * 3, -1), 2, 1, 39, 3, 40)); }, "attention (token selection): selection seq_q = 39"},
      {[=] { run_selection(sa::TokenTopK::from_indices(lists, 2, 1, 40, 3, 41)); }, "attention (token selection): selection seq_k = 41"},
      {[=] { run_selection(sa::TokenTopK::from_indices(std::vector<std::int32_t>(2 * 3 * 40 * 3, -1), 2, 3, 40, 3, 40)); }, "attention (token selection): selection groups = 3"},
      {[=] { run_selection(sel, -1); }, "attention (token selection): num_threads = -1"},
      {[=] { run_selection(sel, 0, static_cast<sa::SelectionPath>(3)); }, "attention (token selection): path = 3"},
      // The lightning indexer.
      {[=] { indexer(ix.qv(), ix.kv(), ix.wv(), 0); }, "lightning_top_k: k = 0"},
      {[=] { indexer(sa::bshd<const float>(ix.q.data(), 2, 40, 3, 7), ix.kv(), ix.wv(), 4); }, "lightning_top_k: index_k shape = [2, 1, 40, 8]"},
      {[=] { indexer(ix.qv(), sa::bhsd<const float>(ix.k.data(), 1, 2, 40, 8), ix.wv(), 4); }, "lightning_top_k: index_k shape = [1, 2, 40, 8]"},
      {[=] { indexer(ix.qv(), ix.kv(), sa::lse_bsh<const float>(ix.w.data(), 2, 40, 2), 4); }, "lightning_top_k: weights shape = [2, 2, 40]"},
      {[=] { indexer(sa::bshd<const float>(ix.q.data(), 2, 40, 0, 8), ix.kv(), sa::lse_bsh<const float>(ix.w.data(), 2, 40, 0), 4); }, "lightning_top_k: H_I (index_q.extent(1)) = 0"},
      {[=] { indexer(ix.qv(), ix.kv(), ix.wv(), 4, -2); }, "lightning_top_k: num_threads = -2"},
      // Block selections.
      {[] { (void)sa::BlockTopK::select(p.qv(), p.kv(), 0, 16); }, "BlockTopK::select: k = 0"},
      {[] { (void)sa::BlockTopK::select(p.qv(), p.kv(), 2, 0); }, "BlockTopK::select: block = 0"},
      {[] { (void)sa::BlockTopK::select(p.qv(), sa::bhsd<const float>(p.k.data(), 2, 3, 20, 8), 2, 16); }, "BlockTopK::select: q heads / k heads = 4 / 3"},
      {[] { (void)sa::BlockTopK::select(p.qv(), sa::bhsd<const float>(p.k.data(), 2, 2, 40, 4), 2, 16); }, "BlockTopK::select: k shape = [2, 2, 40, 4]"},
      {[] { (void)sa::BlockTopK::select(longer_q.qv(), longer_q.kv(), 2, 16); }, "BlockTopK::select: seq_q = 50"},
      {[] { (void)sa::BlockTopK::select(p.qv(), p.kv(), 2, 16, {.num_threads = -1}); }, "BlockTopK::select: num_threads = -1"},
      {[] {
         const Problem<float> one(Shape{1, 4, 2, 40, 40, 8, 8, false}, 4);
         sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(out), sa::BlockTopK::select(one.qv(), one.kv(), 2, 16));
       }, "attention (block selection): selection batch = 1"},
      // The indexer's training signal.
      {[=] { loss(p.qv(), sa::bhsd<const float>(p.k.data(), 2, 3, 20, 8), ix.qv(), ix.kv(), ix.wv()); }, "indexer_kl_loss: q heads / k heads = 4 / 3"},
      {[=] { loss(p.qv(), sa::bhsd<const float>(p.k.data(), 2, 2, 40, 4), ix.qv(), ix.kv(), ix.wv()); }, "indexer_kl_loss: k shape = [2, 2, 40, 4]"},
      {[=] { loss(p.qv(), p.kv(), sa::bshd<const float>(ix.q.data(), 2, 20, 3, 8), ix.kv(), ix.wv()); }, "indexer_kl_loss: index_q shape = [2, 3, 20, 8]"},
      {[=] { loss(p.qv(), p.kv(), ix.qv(), sa::bhsd<const float>(ix.k.data(), 2, 1, 40, 4), ix.wv()); }, "indexer_kl_loss: index_k shape = [2, 1, 40, 4]"},
      {[=] { loss(p.qv(), p.kv(), ix.qv(), ix.kv(), sa::lse_bsh<const float>(ix.w.data(), 2, 20, 3)); }, "indexer_kl_loss: weights shape = [2, 3, 20]"},
      {[=] { loss(p.qv(), p.kv(), ix.qv(), ix.kv(), ix.wv(), {.scale = nan}); }, "indexer_kl_loss: scale = nan"},
      {[=] { loss(p.qv(), p.kv(), ix.qv(), ix.kv(), ix.wv(), {.num_threads = -1}); }, "indexer_kl_loss: num_threads = -1"},
      // Views.
      {[] { float x = 0; (void)sa::TensorView<float>(&x, {1, 1, -1, 1}, {1, 1, 1, 1}); }, "StridedView: extent[2] = -1"},
      {[] { float x = 0; (void)sa::TensorView<float>(&x, {1, 1, 1, 1}, {1, 1, -1, 1}); }, "StridedView: stride[2] = -1"},
  };
}

TEST(InvalidArguments, EveryOneIsRejectedWithItsNameAndValue) {
  for (const BadCase& c : cases()) {
    try {
      c.call();
      ADD_FAILURE() << c.message << ": no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string::npos, std::string(e.what()).find("sparse_attention::" + c.message))
          << "expected \"" << c.message << "\" in: " << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.message << ": threw something other than std::invalid_argument: " << e.what();
    }
  }
}

// docs/validation.md lists every one of them.
TEST(InvalidArguments, AllAreListedInTheDocs) {
  std::ifstream in(SPARSE_ATTENTION_DOCS_DIR "/validation.md");
  ASSERT_TRUE(in) << "docs/validation.md not found";
  std::stringstream text;
  text << in.rdbuf();
  for (const BadCase& c : cases())
    EXPECT_NE(std::string::npos, text.str().find("`" + c.message)) << c.message << " is not in docs/validation.md";
}

}  // namespace
