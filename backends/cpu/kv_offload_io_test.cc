// Write-back packing and the gathered decode view against the in-process cache.
#include "backends/cpu/kv_offload_io.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "backends/cpu/attention.h"

namespace apr::cpu {
namespace {

constexpr AttentionDims kDims{4, 2, 8};

// Keeps blocks in a map; counts what moves.
class MapOffload : public KvOffload {
 public:
  int64_t block_bytes() const override { return OffloadBlockBytes(kDims.head_dim); }
  absl::Status WriteBlocks(absl::Span<const KvBlockRef> blocks,
                           absl::Span<const void* const> data) override {
    for (size_t i = 0; i < blocks.size(); ++i) {
      std::vector<char>& b = store[Key(blocks[i])];
      b.assign(static_cast<const char*>(data[i]),
               static_cast<const char*>(data[i]) + block_bytes());
    }
    written += blocks.size();
    return absl::OkStatus();
  }
  absl::Status ReadBlocks(absl::Span<const KvBlockRef> blocks,
                          absl::Span<void* const> dst) override {
    for (size_t i = 0; i < blocks.size(); ++i) {
      auto it = store.find(Key(blocks[i]));
      if (it == store.end()) return absl::NotFoundError("block not written");
      std::memcpy(dst[i], it->second.data(), block_bytes());
    }
    read += blocks.size();
    return absl::OkStatus();
  }
  static std::tuple<int64_t, int64_t, int64_t> Key(const KvBlockRef& r) {
    return {r.layer, r.kv_head, r.block};
  }
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::vector<char>> store;
  size_t written = 0, read = 0;
};

LayerKv RandomKv(int64_t len, std::mt19937& rng) {
  std::normal_distribution<float> n;
  LayerKv kv;
  kv.heads.resize(kDims.num_kv_heads);
  for (auto& h : kv.heads) {
    for (int64_t i = 0; i < len * kDims.head_dim; ++i) h.k.push_back(n(rng)), h.v.push_back(n(rng));
  }
  return kv;
}

TEST(KvOffloadIoTest, WritesEachBlockOnceWhenItCompletes) {
  std::mt19937 rng(1);
  const LayerKv kv = RandomKv(70, rng);
  MapOffload off;
  std::vector<float> scratch;
  ASSERT_TRUE(WriteCompletedBlocks(off, kv, 3, kDims.head_dim, 0, 40, scratch).ok());
  EXPECT_EQ(off.written, 2u * 2);  // blocks 0, 1 of both heads
  ASSERT_TRUE(WriteCompletedBlocks(off, kv, 3, kDims.head_dim, 40, 47, scratch).ok());
  EXPECT_EQ(off.written, 4u) << "block 2 is not complete at 47 tokens";
  ASSERT_TRUE(WriteCompletedBlocks(off, kv, 3, kDims.head_dim, 47, 48, scratch).ok());
  EXPECT_EQ(off.written, 6u);
  // Layout [2][16][head_dim]: K rows then V rows.
  const std::vector<char>& b = off.store.at({3, 1, 2});
  EXPECT_EQ(std::memcmp(b.data(), kv.heads[1].k.data() + 32 * kDims.head_dim,
                        sizeof(float) * 16 * kDims.head_dim),
            0);
  EXPECT_EQ(
      std::memcmp(b.data() + sizeof(float) * 16 * kDims.head_dim,
                  kv.heads[1].v.data() + 32 * kDims.head_dim, sizeof(float) * 16 * kDims.head_dim),
      0);
}

TEST(KvOffloadIoTest, AttentionOverTheGatheredViewIsBitIdentical) {
  std::mt19937 rng(2);
  for (int64_t ctx : {16, 37, 64, 101}) {
    const LayerKv kv = RandomKv(ctx, rng);
    MapOffload off;
    std::vector<float> scratch;
    ASSERT_TRUE(WriteCompletedBlocks(off, kv, 0, kDims.head_dim, 0, ctx, scratch).ok());
    std::vector<float> q(kDims.num_heads * kDims.head_dim);
    std::normal_distribution<float> n;
    for (float& x : q) x = n(rng);
    // Per KV head: a sink span, a middle block, and the tail.
    std::vector<TokenSpans> spans = {{{0, 5}, {ctx - 3, ctx}}, {{0, 16}, {ctx - 1, ctx}}};
    if (ctx > 40) spans[0].insert(spans[0].begin() + 1, {20, 30});
    for (const std::vector<TokenSpans>* sel :
         {&spans, static_cast<std::vector<TokenSpans>*>(nullptr)}) {
      LayerKv view;
      off.read = 0;
      ASSERT_TRUE(GatherSelectedBlocks(off, kv, 0, kDims.head_dim, ctx, sel, view, scratch).ok());
      std::vector<float> want(q.size()), got(q.size()), pw(kDims.num_heads * ctx),
          pg(kDims.num_heads * ctx);
      DecodeAttention(kDims, kv, q.data(), ctx, sel, want.data(), pw.data());
      DecodeAttention(kDims, view, q.data(), ctx, sel, got.data(), pg.data());
      EXPECT_EQ(std::memcmp(want.data(), got.data(), sizeof(float) * want.size()), 0)
          << "ctx " << ctx;
      EXPECT_EQ(pw, pg);
      if (sel == nullptr) EXPECT_EQ(off.read, static_cast<size_t>(ctx / 16) * 2);
    }
  }
}

}  // namespace
}  // namespace apr::cpu
