// The offload kernels (offload_kernels.h) against host references on random inputs (tag
// "gpu"): key summaries (exact min / max), the calibration row estimated from them (double
// arithmetic, both estimates), cache seeding, and the block cache's plan step by step
// against cache_plan.h's CacheImageModel: the same slots, fetch lists, write-backs and
// counters, with evictions, more slots than threads, and block reuse on and off.
#include "backends/cuda/offload_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "backends/cuda/block_rules.h"
#include "backends/cuda/cache_plan.h"
#include "backends/cuda/test_util.h"

namespace apr::cuda {
namespace {

using testing::B;
using testing::Dev;
using testing::DevBf16;
using testing::HostBf16;
using testing::RoundBf16;
using testing::Uniform;

constexpr float kLog2eF = 1.4426950408889634f;

// A pool of `groups` groups of layers * kv_heads KV blocks ([2][16][hd] bf16) and a group
// table that gives each (sequence slot, block) a random group.
struct PoolFixture {
  int seqs, layers, kv, hd, max_blocks;
  std::vector<float> pool;     // bf16-rounded values
  std::vector<int32_t> table;  // [seqs][max_blocks]
  int64_t Slot(int seq, int layer, int g, int blk) const {
    return int64_t{table[int64_t{seq} * max_blocks + blk]} * layers * kv + layer * kv + g;
  }
  float K(int seq, int layer, int g, int blk, int t, int d) const {
    return pool[Slot(seq, layer, g, blk) * 2 * kBlockTokens * hd + t * hd + d];
  }
};

PoolFixture MakePool(int seqs, int layers, int kv, int hd, int max_blocks, uint64_t seed) {
  PoolFixture p{seqs, layers, kv, hd, max_blocks, {}, {}};
  std::mt19937_64 rng(seed);
  const int groups = seqs * max_blocks;
  p.pool = Uniform(rng, int64_t{groups} * layers * kv * 2 * kBlockTokens * hd, -2.f, 2.f);
  for (float& x : p.pool) x = RoundBf16(x);
  p.table.resize(groups);
  for (int i = 0; i < groups; ++i) p.table[i] = i;
  std::shuffle(p.table.begin(), p.table.end(), rng);
  return p;
}

TEST(KeySummary, MinAndMaxOfEveryChannel) {
  for (int hd : {64, 128}) {
    SCOPED_TRACE(hd);
    const int seqs = 3, L = 2, nkv = 2, mb = 12, seq = 1, first = 2, n = 7;
    const PoolFixture p = MakePool(seqs, L, nkv, hd, mb, hd);
    Dev<uint16_t> pool = DevBf16(p.pool);
    Dev<int32_t> table(p.table);
    Dev<uint16_t> summary(size_t{seqs} * L * nkv * mb * 2 * hd);
    summary.Poison();
    KeySummaryArgs a;
    a.pool = B(pool);
    a.table = SlotTable{table.get(), mb, L * nkv, nkv};
    a.seq_slot = seq;
    a.layers = L;
    a.kv_heads = nkv;
    a.head_dim = hd;
    a.max_blocks = mb;
    a.first_block = first;
    a.num_blocks = n;
    a.summary = B(summary);
    ASSERT_CUDA(LaunchKeySummary(a, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    const std::vector<uint16_t> bits = summary.Host();
    const std::vector<float> got = HostBf16(summary);
    for (int s = 0; s < seqs; ++s) {
      for (int l = 0; l < L; ++l) {
        for (int g = 0; g < nkv; ++g) {
          for (int blk = 0; blk < mb; ++blk) {
            const int64_t at = (((int64_t{s} * L + l) * nkv + g) * mb + blk) * 2 * hd;
            const bool written = s == seq && blk >= first && blk < first + n;
            for (int d = 0; d < hd; ++d) {
              if (!written) {
                ASSERT_EQ(bits[at + d], 0xffff) << "seq " << s << " block " << blk;
                continue;
              }
              float mn = INFINITY, mx = -INFINITY;
              for (int t = 0; t < kBlockTokens; ++t) {
                mn = std::min(mn, p.K(s, l, g, blk, t, d));
                mx = std::max(mx, p.K(s, l, g, blk, t, d));
              }
              ASSERT_EQ(got[at + d], mn) << "layer " << l << " head " << g << " block " << blk;
              ASSERT_EQ(got[at + hd + d], mx) << "layer " << l << " head " << g << " block " << blk;
            }
          }
        }
      }
    }
  }
}

TEST(SummaryCalibration, EstimatesUnlistedBlocksOfCalibratingRows) {
  for (SummaryEstimate est : {SummaryEstimate::kCenterL2, SummaryEstimate::kQuestBound}) {
    SCOPED_TRACE(static_cast<int>(est));
    const int Bn = 3, H = 8, nkv = 2, G = H / nkv, hd = 128, ms = 3, sl = 2, layer = 1;
    const int mb = 72, rows = kHistoryRing, stride = 16;
    const std::vector<int32_t> lens = {700, 333, 1100}, slots = {2, 0, 1}, dense = {1, 0, 1},
                               hist_row = {5, 7, 70};
    std::mt19937_64 rng(11 + static_cast<int>(est));
    const std::vector<float> q = Uniform(rng, size_t{Bn} * H * hd);
    // Summaries: min <= max, bf16.
    std::vector<float> summ(size_t{ms} * sl * nkv * mb * 2 * hd);
    for (size_t i = 0; i < summ.size(); i += 2 * hd) {
      for (int d = 0; d < hd; ++d) {
        float a = RoundBf16(Uniform(rng, 1)[0]), b = RoundBf16(Uniform(rng, 1)[0]);
        summ[i + d] = std::min(a, b);
        summ[i + hd + d] = std::max(a, b);
      }
    }
    // Listed blocks per row (ascending), a few per row.
    std::vector<int32_t> counts(Bn * nkv), blocks(size_t{Bn} * nkv * stride, -1);
    for (int r = 0; r < Bn * nkv; ++r) {
      std::set<int32_t> s;
      const int nb = NumBlocks(lens[r / nkv]);
      while (static_cast<int>(s.size()) < 6 + r) s.insert(static_cast<int32_t>(rng() % nb));
      counts[r] = static_cast<int32_t>(s.size());
      std::copy(s.begin(), s.end(), blocks.begin() + int64_t{r} * stride);
    }
    const float scale = 1.f / std::sqrt(static_cast<float>(hd));
    // u of (batch entry, head, block) in double from the float operands.
    auto u_of = [&](int b, int h, int j) {
      const int g = h / G;
      const float* s =
          summ.data() + (((int64_t{slots[b]} * sl + layer) * nkv + g) * mb + j) * 2 * hd;
      double dot = 0, rad = 0;
      for (int d = 0; d < hd; ++d) {
        const double qs = double(q[(int64_t{b} * H + h) * hd + d] * (scale * kLog2eF));
        const double c = 0.5 * (double(s[d]) + s[hd + d]), r = 0.5 * (double(s[hd + d]) - s[d]);
        dot += qs * c;
        rad += est == SummaryEstimate::kQuestBound ? std::fabs(qs) * r : (qs * r) * (qs * r);
      }
      return dot + (est == SummaryEstimate::kQuestBound ? rad : std::sqrt(rad));
    };
    // (max, normaliser) per head: the largest estimate of its row and a normaliser in
    // [1, 3], so the probabilities spread over (0, 1].
    std::vector<float> ml(size_t{Bn} * H * 2);
    for (int b = 0; b < Bn; ++b) {
      for (int h = 0; h < H; ++h) {
        double m = -INFINITY;
        for (int j = 0; j < NumBlocks(lens[b]); ++j) m = std::max(m, u_of(b, h, j));
        ml[(int64_t{b} * H + h) * 2] = static_cast<float>(m) - 0.5f;
        ml[(int64_t{b} * H + h) * 2 + 1] = 1.f + 2.f * Uniform(rng, 1, 0.f, 1.f)[0];
      }
    }
    Dev<float> dq(q), dml(ml);
    Dev<int32_t> dlens(lens), dslots(slots), ddense(dense), drow(hist_row), dcounts(counts),
        dblocks(blocks);
    Dev<uint16_t> dsumm = DevBf16(summ);
    Dev<float> hist(size_t{ms} * sl * nkv * rows * mb);
    hist.Poison();
    SummaryCalibrationArgs a;
    a.batch = Bn;
    a.num_heads = H;
    a.num_kv_heads = nkv;
    a.head_dim = hd;
    a.scale = scale;
    a.q = dq.get();
    a.ml = dml.get();
    a.context_lens = dlens.get();
    a.seq_slots = dslots.get();
    a.dense = ddense.get();
    a.history_row = drow.get();
    a.lists.counts = dcounts.get();
    a.lists.blocks = dblocks.get();
    a.lists.stride = stride;
    a.summary = B(dsumm);
    a.summary_layers = sl;
    a.max_blocks = mb;
    a.layer = layer;
    a.history = hist.get();
    a.history_layers = sl;
    a.history_rows = rows;
    a.history_cols = mb;
    a.estimate = est;
    a.max_cols = mb;
    ASSERT_CUDA(LaunchSummaryCalibration(a, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    const std::vector<float> got = hist.Host();
    int checked = 0, clipped = 0;
    for (int b = 0; b < Bn; ++b) {
      for (int g = 0; g < nkv; ++g) {
        const int r = b * nkv + g;
        const std::set<int32_t> listed(blocks.begin() + int64_t{r} * stride,
                                       blocks.begin() + int64_t{r} * stride + counts[r]);
        const float* row = got.data() + ((int64_t{slots[b]} * sl + layer) * nkv + g) * rows * mb +
                           int64_t{hist_row[b]} * mb;
        for (int j = 0; j < mb; ++j) {
          const bool written = dense[b] != 0 && j < NumBlocks(lens[b]) && listed.count(j) == 0;
          if (!written) {
            ASSERT_TRUE(std::isnan(row[j])) << "batch " << b << " head " << g << " block " << j;
            continue;
          }
          double p = 0;
          for (int h = g * G; h < (g + 1) * G; ++h) {
            const float* m = ml.data() + (int64_t{b} * H + h) * 2;
            p = std::max(p, std::min(1.0, std::exp2(u_of(b, h, j) - m[0]) / m[1]));
          }
          ASSERT_NEAR(row[j], p, 1e-5 + 1e-4 * p)
              << "batch " << b << " head " << g << " block " << j;
          ++checked;
          clipped += p == 1.0;
        }
      }
    }
    // Enough estimated entries to mean something (192 with these seeds on the H100 run of
    // 2026-11-23; the first guess, 500, overestimated the unlisted blocks).
    EXPECT_GT(checked, 100);
    EXPECT_LT(clipped, checked / 4) << "the estimates should not all saturate";
  }
}

TEST(SeedCache, MapsAndCopiesTheSeedBlocks) {
  const int seqs = 2, L = 2, nkv = 2, hd = 64, mb = 80, C = 12, seq = 1;
  const PoolFixture p = MakePool(seqs, L, nkv, hd, mb, 5);
  Dev<uint16_t> src = DevBf16(p.pool);
  Dev<int32_t> table(p.table);
  const std::vector<int32_t> seed = SeedBlocks(1000);  // 0..3, 58..62
  ASSERT_LE(static_cast<int>(seed.size()), C);
  const int64_t images = int64_t{seqs} * L * nkv, slot_elems = 2 * kBlockTokens * hd;
  Dev<int32_t> where(images * mb), tags(images * C), stamps(images * C), dseed(seed);
  where.Poison();
  tags.Poison();
  Dev<uint16_t> pool(images * C * slot_elems);
  ASSERT_CUDA(cudaMemset(pool.get(), 0, pool.size() * 2));
  SeedCacheArgs a;
  a.seq_slot = seq;
  a.blocks = dseed.get();
  a.n = static_cast<int>(seed.size());
  a.cache = CacheMap{where.get(), tags.get(), stamps.get(), L, nkv, mb, C};
  a.src_pool = B(src);
  a.src_table = SlotTable{table.get(), mb, L * nkv, nkv};
  a.pool = B(pool);
  a.head_dim = hd;
  ASSERT_CUDA(LaunchSeedCache(a, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<int32_t> w = where.Host(), t = tags.Host();
  const std::vector<float> got = HostBf16(pool);
  for (int64_t img = 0; img < images; ++img) {
    const bool mine = img / (L * nkv) == seq;
    const int l = static_cast<int>(img / nkv % L), g = static_cast<int>(img % nkv);
    for (int c = 0; c < C; ++c) {
      const int want = mine && c < static_cast<int>(seed.size()) ? seed[c] : -1;
      ASSERT_EQ(t[img * C + c], want) << "image " << img << " slot " << c;
      if (want < 0) continue;
      ASSERT_EQ(w[img * mb + want], c);
      const float* from = p.pool.data() + p.Slot(seq, l, g, want) * slot_elems;
      for (int64_t e = 0; e < slot_elems; ++e)
        ASSERT_EQ(got[(img * C + c) * slot_elems + e], from[e]) << "image " << img << " slot " << c;
    }
    int mapped = 0;
    for (int blk = 0; blk < mb; ++blk) mapped += w[img * mb + blk] >= 0;
    ASSERT_EQ(mapped, mine ? static_cast<int>(seed.size()) : 0) << "image " << img;
  }
}

// The plan kernel step by step against one CacheImageModel per image.
class CachePlan : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(CachePlan, MatchesTheHostModel) {
  const auto [C, reuse] = GetParam();
  // Batch entries 0, 1 are sequence slots 1, 0; layer 1 of 2 is planned.
  const int ms = 2, Bn = 2, L = 2, nkv = 2, layer = 1, mb = 512, steps = 70;
  const std::vector<int32_t> seq_of = {1, 0};
  // Not a multiple of 16 (prefill wrote every complete block), and more candidate blocks
  // than cache slots, so selections churn through evictions.
  const int len0 = C > 256 ? 7009 : 1001;
  const int64_t images = int64_t{ms} * L * nkv, tier_stride = int64_t{L} * nkv;
  std::mt19937_64 rng(C * 2 + reuse);

  // Tier table: a unique slot per complete block, kNoTierSlot beyond.
  std::vector<uint32_t> tier(size_t{ms} * mb * tier_stride, kNoTierSlot);
  auto tier_slot = [&](int seq, int blk, int l, int g) -> uint32_t& {
    return tier[(int64_t{seq} * mb + blk) * tier_stride + l * nkv + g];
  };
  uint32_t next_tier = 100000;
  for (int s = 0; s < ms; ++s)
    for (int blk = 0; blk < len0 / kBlockTokens; ++blk)
      for (int l = 0; l < L; ++l)
        for (int g = 0; g < nkv; ++g) tier_slot(s, blk, l, g) = next_tier++;
  Dev<uint32_t> dtier(tier);
  Dev<int32_t> where(images * mb), tags(images * C), stamps(images * C);
  where.Poison();
  tags.Poison();
  ASSERT_CUDA(cudaMemset(stamps.get(), 0, stamps.size() * 4));
  const std::vector<int32_t> seed = SeedBlocks(len0);
  Dev<int32_t> dseed(seed);
  const CacheMap cache{where.get(), tags.get(), stamps.get(), L, nkv, mb, C};
  std::vector<CacheImageModel> model(images, CacheImageModel(C));
  for (int s = 0; s < ms; ++s) {
    SeedCacheArgs sa;
    sa.seq_slot = s;
    sa.blocks = dseed.get();
    sa.n = static_cast<int>(seed.size());
    sa.cache = cache;
    ASSERT_CUDA(LaunchSeedCache(sa, nullptr));
  }
  for (auto& m : model) m.Seed(seed);

  const int stride = C;
  Dev<int32_t> sel_blocks(size_t{ms} * L * nkv * stride), sel_counts(size_t{ms} * L * nkv),
      sel_lens(ms), dlens(Bn), dseqs(seq_of), scratch(size_t{Bn} * nkv * C), fetch_count(1),
      wb_count(1), issued(L), error(1);
  const int max_fetch = Bn * nkv * C;
  Dev<uint32_t> fetch_src(max_fetch), fetch_dst(max_fetch), wb_src(Bn * nkv), wb_dst(Bn * nkv),
      wb_slots(size_t{Bn} * L * nkv);
  Dev<unsigned long long> counters(kOffloadCounters);
  ASSERT_CUDA(cudaMemset(counters.get(), 0, counters.size() * 8));
  ASSERT_CUDA(cudaMemset(issued.get(), 0, L * 4));
  ASSERT_CUDA(cudaMemset(error.get(), 0, 4));
  std::vector<std::vector<int32_t>> prev_sel(images);
  CachePlanCounts total;
  int64_t evictions = 0;
  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE(step);
    const int len = len0 + 1 + step;
    const int sb = SinkBlocks(len), lo = std::max(FirstLocalBlock(len), sb);
    // Selections: most of the previous one kept, the rest new, sizes that fill the cache.
    std::vector<int32_t> hb(sel_blocks.size(), -1), hc(sel_counts.size(), 0);
    const int room = C - sb - (NumBlocks(len) - lo);
    ASSERT_GT(room, 4);
    for (int s = 0; s < ms; ++s) {
      for (int g = 0; g < nkv; ++g) {
        const int64_t img = (int64_t{s} * L + layer) * nkv + g;
        std::set<int32_t> pick;
        for (int32_t b : prev_sel[img])
          if (rng() % 8 != 0) pick.insert(b);
        const int want = std::min(lo - sb, room / 2 + static_cast<int>(rng() % (room / 2 + 1)));
        while (static_cast<int>(pick.size()) < want)
          pick.insert(sb + static_cast<int32_t>(rng() % (lo - sb)));
        while (static_cast<int>(pick.size()) > want) pick.erase(std::prev(pick.end()));
        prev_sel[img].assign(pick.begin(), pick.end());
        std::copy(pick.begin(), pick.end(), hb.begin() + img * stride);
        hc[img] = static_cast<int32_t>(pick.size());
      }
    }
    ASSERT_CUDA(cudaMemcpy(sel_blocks.get(), hb.data(), hb.size() * 4, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemcpy(sel_counts.get(), hc.data(), hc.size() * 4, cudaMemcpyHostToDevice));
    const std::vector<int32_t> lens_s(ms, len), lens_b(Bn, len);
    ASSERT_CUDA(cudaMemcpy(sel_lens.get(), lens_s.data(), ms * 4, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemcpy(dlens.get(), lens_b.data(), Bn * 4, cudaMemcpyHostToDevice));
    std::vector<uint32_t> hwb(wb_slots.size());
    for (size_t i = 0; i < hwb.size(); ++i) hwb[i] = static_cast<uint32_t>(5000000 + step * 64 + i);
    ASSERT_CUDA(cudaMemcpy(wb_slots.get(), hwb.data(), hwb.size() * 4, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemset(fetch_count.get(), 0, 4));
    ASSERT_CUDA(cudaMemset(wb_count.get(), 0, 4));
    const std::vector<int32_t> tags_before = tags.Host();

    CachePlanArgs a;
    a.batch = Bn;
    a.layer = layer;
    a.next_lens = dlens.get();
    a.seq_slots = dseqs.get();
    a.sel = Selection{sel_blocks.get(), sel_counts.get(), sel_lens.get(), L, nkv, stride};
    a.cache = cache;
    a.tier = dtier.get();
    a.reuse = reuse;
    a.fetch_src = fetch_src.get();
    a.fetch_dst = fetch_dst.get();
    a.fetch_count = fetch_count.get();
    a.max_fetch = max_fetch;
    a.wb_slots = wb_slots.get();
    a.record_tier = true;
    a.wb_src = wb_src.get();
    a.wb_dst = wb_dst.get();
    a.wb_count = wb_count.get();
    a.scratch = scratch.get();
    a.counters = counters.get();
    a.issued = issued.get();
    a.error = error.get();
    ASSERT_CUDA(LaunchCachePlan(a, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());

    // The host model's plan, and the fetches and write-backs it implies.
    std::multiset<std::pair<uint32_t, uint32_t>> want_fetch, want_wb;
    CachePlanCounts sum;
    const int full = (len - 1) / kBlockTokens;
    const bool fills = (len - 1) % kBlockTokens == 0;
    for (int b = 0; b < Bn; ++b) {
      const int s = seq_of[b];
      for (int g = 0; g < nkv; ++g) {
        const int64_t img = (int64_t{s} * L + layer) * nkv + g;
        CacheImageModel& m = model[img];
        const std::vector<int32_t> old = m.tags();
        const CachePlanCounts c = m.Plan(len, prev_sel[img], reuse);
        ASSERT_FALSE(c.error);
        sum.hits += c.hits;
        sum.predicted += c.predicted;
        sum.fetched += c.fetched;
        for (int slot = 0; slot < C; ++slot) {
          const int32_t blk = m.tags()[slot];
          const bool placed = blk >= 0 && blk != old[slot];
          const bool again = !reuse && blk >= 0 && blk == old[slot] && blk >= sb && blk < lo &&
                             std::binary_search(prev_sel[img].begin(), prev_sel[img].end(), blk);
          evictions += placed && old[slot] >= 0;
          if ((placed && blk < full) || again)
            want_fetch.emplace(tier_slot(s, blk, layer, g), static_cast<uint32_t>(img * C + slot));
        }
        if (fills) {
          const int fb = (len - 2) / kBlockTokens;
          const uint32_t dst = hwb[(int64_t{b} * L + layer) * nkv + g];
          const int slot = m.where(fb);
          ASSERT_GE(slot, 0);
          want_wb.emplace(static_cast<uint32_t>(img * C + slot), dst);
          tier_slot(s, fb, layer, g) = dst;  // record_tier
        }
      }
    }
    total.hits += sum.hits;
    total.fetched += sum.fetched;
    total.predicted += sum.predicted;

    ASSERT_EQ(error.Host()[0], 0);
    const std::vector<int32_t> t = tags.Host(), w = where.Host();
    for (int64_t img = 0; img < images; ++img) {
      if (img / nkv % L != layer) {  // other layers untouched
        for (int c = 0; c < C; ++c) ASSERT_EQ(t[img * C + c], tags_before[img * C + c]);
        continue;
      }
      for (int c = 0; c < C; ++c) {
        ASSERT_EQ(t[img * C + c], model[img].tags()[c]) << "image " << img << " slot " << c;
        if (t[img * C + c] >= 0) {
          ASSERT_EQ(w[img * mb + t[img * C + c]], c);
        }
      }
      int mapped = 0;
      for (int blk = 0; blk < mb; ++blk) mapped += w[img * mb + blk] >= 0;
      int tagged = 0;
      for (int c = 0; c < C; ++c) tagged += t[img * C + c] >= 0;
      ASSERT_EQ(mapped, tagged) << "image " << img;
    }
    const int nf = fetch_count.Host()[0];
    ASSERT_EQ(nf, static_cast<int>(want_fetch.size()));
    const std::vector<uint32_t> fs = fetch_src.Host(), fd = fetch_dst.Host();
    std::multiset<std::pair<uint32_t, uint32_t>> got_fetch;
    for (int i = 0; i < nf; ++i) got_fetch.emplace(fs[i], fd[i]);
    ASSERT_EQ(got_fetch, want_fetch);
    const int nw = wb_count.Host()[0];
    ASSERT_EQ(nw, static_cast<int>(want_wb.size()));
    const std::vector<uint32_t> ws = wb_src.Host(), wd = wb_dst.Host();
    std::multiset<std::pair<uint32_t, uint32_t>> got_wb;
    for (int i = 0; i < nw; ++i) got_wb.emplace(ws[i], wd[i]);
    ASSERT_EQ(got_wb, want_wb);
    ASSERT_EQ(dtier.Host(), tier) << "the recorded tier slots";
  }
  const std::vector<unsigned long long> cnt = counters.Host();
  EXPECT_EQ(cnt[kCounterHits], static_cast<unsigned long long>(total.hits));
  EXPECT_EQ(cnt[kCounterPredicted], static_cast<unsigned long long>(total.predicted));
  EXPECT_EQ(cnt[kCounterFetched], static_cast<unsigned long long>(total.fetched));
  EXPECT_EQ(cnt[kCounterPlans], static_cast<unsigned long long>(steps) * Bn * nkv);
  EXPECT_EQ(issued.Host()[layer], steps);
  EXPECT_GT(total.fetched, 0);
  if (reuse) {
    EXPECT_GT(total.hits, 0);
    EXPECT_GT(evictions, steps) << "selections larger than the spare slots must evict";
  } else {
    EXPECT_EQ(total.hits, 0);
  }

  // A selection made for another length fails the plan (never a silent fallback).
  const std::vector<int32_t> stale(ms, len0);
  ASSERT_CUDA(cudaMemcpy(sel_lens.get(), stale.data(), ms * 4, cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemset(fetch_count.get(), 0, 4));
  CachePlanArgs a;
  a.batch = Bn;
  a.layer = layer;
  a.next_lens = dlens.get();
  a.seq_slots = dseqs.get();
  a.sel = Selection{sel_blocks.get(), sel_counts.get(), sel_lens.get(), L, nkv, stride};
  a.cache = cache;
  a.tier = dtier.get();
  a.fetch_src = fetch_src.get();
  a.fetch_dst = fetch_dst.get();
  a.fetch_count = fetch_count.get();
  a.max_fetch = max_fetch;
  a.scratch = scratch.get();
  a.counters = counters.get();
  a.issued = issued.get();
  a.error = error.get();
  ASSERT_CUDA(LaunchCachePlan(a, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_EQ(error.Host()[0], 1);
  EXPECT_EQ(fetch_count.Host()[0], 0);
}

// 40 slots: evictions every step; 300 slots: more slots than the kernel's 256 threads.
INSTANTIATE_TEST_SUITE_P(Slots, CachePlan,
                         ::testing::Combine(::testing::Values(40, 300), ::testing::Bool()));

}  // namespace
}  // namespace apr::cuda
