// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;
using sa::testing::iota;
using sa::testing::join;
using sa::testing::keys_of;

namespace {

// 3 x 3 blocks of 4 positions: block row 0 -> {0}, row 1 -> {0, 1}, row 2 -> {0, 2}.
const std::vector<std::uint8_t> kBits = {1, 0, 0,  //
                                         1, 1, 0,  //
                                         1, 0, 1};

TEST(BlockMask, FromBitmap) {
  const sa::BlockMask m = sa::BlockMask::from_bitmap(kBits, 1, 3, 3, {4, 4});
  EXPECT_EQ(iota(0, 3), keys_of(m, {12, 12}, 2));
  EXPECT_EQ(iota(0, 7), keys_of(m, {12, 12}, 5));
  EXPECT_EQ(join(iota(0, 3), iota(8, 11)), keys_of(m, {12, 12}, 9));
  // Causal inside blocks: query 9 keeps keys j <= 9 only.
  const sa::BlockMask causal = sa::BlockMask::from_bitmap(kBits, 1, 3, 3, {4, 4}, true);
  EXPECT_EQ(join(iota(0, 3), iota(8, 9)), keys_of(causal, {12, 12}, 9));
}

TEST(BlockMask, CompressedRowsEqualTheBitmap) {
  // FlexAttention's kv_num_blocks {1, 2, 2} and kv_indices, as compressed rows.
  const sa::BlockMask rows = sa::BlockMask::from_rows({0, 1, 3, 5}, {0, 0, 1, 0, 2}, 1, 3, 3, {4, 4});
  const sa::BlockMask bits = sa::BlockMask::from_bitmap(kBits, 1, 3, 3, {4, 4});
  for (sa::Index i = 0; i < 12; ++i) EXPECT_EQ(keys_of(bits, {12, 12}, i), keys_of(rows, {12, 12}, i));
}

TEST(BlockMask, Phi3SmallLocalPlusVerticalStride) {
  const sa::BlockMask m = sa::testing::phi3_layout(64, 8, 2, 3, 2);
  // Head 0, query 60 (block 7): local blocks 6, 7 and vertical blocks 2, 5 (c + 1 divisible by 3).
  EXPECT_EQ(join(join(iota(16, 23), iota(40, 47)), iota(48, 60)), keys_of(m, {64, 64}, 60, 0));
  // Head 1 shifts the vertical blocks to 1 and 4.
  EXPECT_EQ(join(join(iota(8, 15), iota(32, 39)), iota(48, 60)), keys_of(m, {64, 64}, 60, 1));
}

TEST(BlockMask, ConsistentWithItsPredicate) {
  for (sa::Index block : {1, 3, 8})
    for (bool causal : {false, true})
      sa::testing::expect_policy_consistent(
          [&](sa::Extent x) {
            const sa::Index rows = sa::detail::ceil_div(x.seq_k, block), cols = rows;
            std::vector<std::uint8_t> bits(static_cast<std::size_t>(2 * rows * cols));
            for (std::size_t t = 0; t < bits.size(); ++t) bits[t] = (t * 2654435761u >> 7) % 3 == 0 ? 1 : 0;
            return sa::BlockMask::from_bitmap(bits, 2, rows, cols, {block, block}, causal);
          },
          "BlockMask(" + std::to_string(block) + ")", sa::testing::small_extents(), 2);
}

TEST(BlockMask, RejectsBadLayouts) {
  EXPECT_THROW(sa::BlockMask::from_bitmap(kBits, 1, 3, 4, {4, 4}), std::invalid_argument);     // size
  EXPECT_THROW(sa::BlockMask::from_bitmap(kBits, 0, 3, 3, {4, 4}), std::invalid_argument);     // heads
  EXPECT_THROW(sa::BlockMask::from_bitmap(kBits, 1, 3, 3, {0, 4}), std::invalid_argument);     // block
  EXPECT_THROW(sa::BlockMask::from_rows({0, 1, 3}, {0, 0, 1}, 1, 3, 3, {4, 4}), std::invalid_argument);        // row_begin size
  EXPECT_THROW(sa::BlockMask::from_rows({0, 1, 3, 5}, {0, 1, 0, 0, 2}, 1, 3, 3, {4, 4}), std::invalid_argument);  // unsorted
  EXPECT_THROW(sa::BlockMask::from_rows({0, 1, 3, 5}, {0, 0, 0, 0, 2}, 1, 3, 3, {4, 4}), std::invalid_argument);  // repeated
  EXPECT_THROW(sa::BlockMask::from_rows({0, 1, 3, 5}, {0, 0, 1, 0, 3}, 1, 3, 3, {4, 4}), std::invalid_argument);  // range
  EXPECT_THROW(sa::BlockMask::from_rows({0, 2, 1, 5}, {0, 0, 1, 0, 2}, 1, 3, 3, {4, 4}), std::invalid_argument);  // decreasing
  const sa::BlockMask m = sa::BlockMask::from_bitmap(kBits, 1, 3, 3, {4, 4});
  EXPECT_THROW(sa::BlockLayout::build(m, {16, 16}), std::invalid_argument);  // 4 x 4 blocks needed
  EXPECT_NO_THROW(sa::BlockLayout::build(m, {12, 12}, {4, 4}, 5));          // one layout broadcast to 5 heads
  const sa::BlockMask two = sa::BlockMask::from_bitmap(std::vector<std::uint8_t>(18, 1), 2, 3, 3, {4, 4});
  EXPECT_THROW(sa::BlockLayout::build(two, {12, 12}, {4, 4}, 3), std::invalid_argument);  // 2 heads for 3
  try {
    sa::BlockMask::from_rows({0, 1, 3, 5}, {0, 1, 0, 0, 2}, 1, 3, 3, {4, 4});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("columns[2] = 0"), std::string::npos) << e.what();
  }
}

}  // namespace
