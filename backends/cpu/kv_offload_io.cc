#include "backends/cpu/kv_offload_io.h"

#include <algorithm>
#include <cstring>

#include "base/status_macros.h"

namespace apr::cpu {

absl::Status WriteCompletedBlocks(KvOffload& offload, const LayerKv& kv, int64_t layer,
                                  int64_t head_dim, int64_t start, int64_t ctx,
                                  std::vector<float>& scratch) {
  const int64_t first = start / kKvBlockTokens, end = ctx / kKvBlockTokens;
  if (end <= first) return absl::OkStatus();
  const int64_t heads = static_cast<int64_t>(kv.heads.size());
  const int64_t half = kKvBlockTokens * head_dim;  // floats of K (or V) in one block
  scratch.resize((end - first) * heads * 2 * half);
  std::vector<KvBlockRef> refs;
  std::vector<const void*> data;
  float* out = scratch.data();
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t b = first; b < end; ++b) {
      std::memcpy(out, kv.heads[h].k.data() + b * half, sizeof(float) * half);
      std::memcpy(out + half, kv.heads[h].v.data() + b * half, sizeof(float) * half);
      refs.push_back({layer, h, b});
      data.push_back(out);
      out += 2 * half;
    }
  }
  return offload.WriteBlocks(refs, data);
}

absl::Status GatherSelectedBlocks(KvOffload& offload, const LayerKv& kv, int64_t layer,
                                  int64_t head_dim, int64_t ctx,
                                  const std::vector<TokenSpans>* spans, LayerKv& view,
                                  std::vector<float>& scratch) {
  const int64_t heads = static_cast<int64_t>(kv.heads.size());
  const int64_t half = kKvBlockTokens * head_dim;
  const int64_t complete = ctx / kKvBlockTokens;  // blocks [0, complete) are in the offload
  view.heads.resize(heads);
  std::vector<KvBlockRef> refs;
  std::vector<int64_t> blocks;
  for (int64_t h = 0; h < heads; ++h) {
    view.heads[h].k.resize(ctx * head_dim);
    view.heads[h].v.resize(ctx * head_dim);
    // Blocks the spans touch, ascending and distinct (spans are sorted and disjoint).
    blocks.clear();
    const TokenSpans all = {{0, ctx}};
    for (const auto& [b, e] : spans == nullptr ? all : (*spans)[h]) {
      for (int64_t blk = b / kKvBlockTokens; blk * kKvBlockTokens < e; ++blk) {
        if (blocks.empty() || blocks.back() < blk) blocks.push_back(blk);
      }
    }
    for (int64_t blk : blocks) {
      if (blk < complete) {
        refs.push_back({layer, h, blk});
      } else {  // the partial tail: still only in the backend's cache
        const int64_t from = blk * kKvBlockTokens, n = (ctx - from) * head_dim;
        std::memcpy(view.heads[h].k.data() + from * head_dim,
                    kv.heads[h].k.data() + from * head_dim, sizeof(float) * n);
        std::memcpy(view.heads[h].v.data() + from * head_dim,
                    kv.heads[h].v.data() + from * head_dim, sizeof(float) * n);
      }
    }
  }
  if (refs.empty()) return absl::OkStatus();
  scratch.resize(refs.size() * 2 * half);
  std::vector<void*> dst(refs.size());
  for (size_t i = 0; i < refs.size(); ++i) dst[i] = scratch.data() + i * 2 * half;
  APR_RETURN_IF_ERROR(offload.ReadBlocks(refs, dst));
  for (size_t i = 0; i < refs.size(); ++i) {
    HeadKv& out = view.heads[refs[i].kv_head];
    const float* block = scratch.data() + i * 2 * half;
    std::memcpy(out.k.data() + refs[i].block * half, block, sizeof(float) * half);
    std::memcpy(out.v.data() + refs[i].block * half, block + half, sizeof(float) * half);
  }
  return absl::OkStatus();
}

}  // namespace apr::cpu
