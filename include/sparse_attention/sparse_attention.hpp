// SPDX-License-Identifier: Apache-2.0
// sparse_attention: sparse attention for long sequences. Mask policies say which (query, key) pairs
// interact; BlockLayout compiles a policy into the tiles to visit; one blocked kernel computes only
// those tiles; reference::dense_attention is the O(n^2) oracle beside it.
#pragma once

#include "sparse_attention/config.hpp"
#include "sparse_attention/version.hpp"

#include "sparse_attention/core/block_layout.hpp"
#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/memory.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"

#include "sparse_attention/masks/bigbird.hpp"
#include "sparse_attention/masks/block_mask.hpp"
#include "sparse_attention/masks/causal.hpp"
#include "sparse_attention/masks/combinators.hpp"
#include "sparse_attention/masks/dense.hpp"
#include "sparse_attention/masks/fixed.hpp"
#include "sparse_attention/masks/local_window.hpp"
#include "sparse_attention/masks/longformer.hpp"
#include "sparse_attention/masks/segments.hpp"
#include "sparse_attention/masks/strided.hpp"

#include "sparse_attention/kernel/blocked_attention.hpp"
#include "sparse_attention/kernel/gather_attention.hpp"
#include "sparse_attention/kernel/longformer_global.hpp"

#include "sparse_attention/dynamic/block_top_k.hpp"
#include "sparse_attention/dynamic/indexer_training.hpp"
#include "sparse_attention/dynamic/lightning_indexer.hpp"
#include "sparse_attention/dynamic/token_top_k.hpp"

#include "sparse_attention/reference/dense_attention.hpp"
#include "sparse_attention/reference/lightning_indexer.hpp"
