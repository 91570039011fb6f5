// The CPU integration test: the bundled model (models/apr-tiny) decoded by the CPU
// reference with its KV cache in a storage node (a separate process on 127.0.0.1, UCX
// over TCP or shared memory) gives the same tokens, and bit-identical logits, as the
// in-process cache under the same sparse selection (sink + local window + every 4th
// block, shifting by one block every token so that each step needs blocks the previous
// one did not), and under full attention. Completed blocks are written back to the node as they
// fill (prefill writes the prompt's); every decode step reads the selected blocks back
// over UCX (through a block cache, with cross-token prefetch, in one variant).
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "backends/cpu/kv_offload_io.h"
#include "gtest/gtest.h"
#include "kvstore/client/local_tier.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/testing/storage_node_process.h"
#include "kvstore/testing/strided_policy.h"
#include "kvstore/tier_kv_offload.h"

namespace apr::kvstore {
namespace {

using testing::StorageNodeBinary;
using testing::StorageNodeProcess;
using testing::StridedPolicy;

constexpr int kPromptTokens = 700;
constexpr int kDecodeSteps = 40;  // crosses 2-3 block boundaries
constexpr int kStride = 4;

std::vector<int32_t> Prompt(int64_t vocab) {
  std::mt19937 rng(2026);
  std::vector<int32_t> ids(kPromptTokens);
  for (int32_t& t : ids) t = 2 + static_cast<int32_t>(rng() % (vocab - 2));
  return ids;
}

int32_t ArgMax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct DecodeRun {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // per decode step
};

// Greedy decoding of kDecodeSteps tokens after the prompt.
DecodeRun Decode(Decoder& d, Sequence& seq) {
  DecodeRun r;
  std::vector<float> logits;
  absl::Status s = d.Prefill(seq, Prompt(d.config().vocab_size), &logits);
  EXPECT_TRUE(s.ok()) << s;
  for (int i = 0; i < kDecodeSteps && s.ok(); ++i) {
    const int32_t t = ArgMax(logits);
    r.tokens.push_back(t);
    s = d.Decode(seq, t, &logits);
    EXPECT_TRUE(s.ok()) << "step " << i << ": " << s;
    r.logits.push_back(logits);
  }
  return r;
}

class OffloadedDecodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto d = cpu::CpuDecoder::Load("models/apr-tiny");
    ASSERT_TRUE(d.ok()) << d.status();
    decoder_ = d->release();
    StridedPolicy sparse(kStride, /*rotate=*/true);
    auto seq = decoder_->NewSequence(&sparse);
    sparse_ref_ = new DecodeRun(Decode(*decoder_, *seq));
    auto dense = decoder_->NewSequence();
    dense_ref_ = new DecodeRun(Decode(*decoder_, *dense));
  }
  static void TearDownTestSuite() {
    delete decoder_;
    delete sparse_ref_;
    delete dense_ref_;
  }

  const ModelConfig& config() { return decoder_->config(); }
  int64_t BlockBytes() { return cpu::OffloadBlockBytes(config().head_dim); }

  std::unique_ptr<StorageNodeProcess> StartNode(const std::string& tls) {
    auto node = StorageNodeProcess::Start(
        StorageNodeBinary(),
        {"--capacity_blocks=2048", absl::StrCat("--block_bytes=", BlockBytes()),
         absl::StrCat("--ucx_tls=", tls), "--ucx_net_devices=lo"});
    EXPECT_TRUE(node.ok()) << node.status();
    return node.ok() ? *std::move(node) : nullptr;
  }

  std::unique_ptr<RemoteTier> ConnectTo(const StorageNodeProcess& node, const std::string& tls,
                                        bool background_progress = false) {
    RemoteTierOptions o;
    o.background_progress = background_progress;
    o.address = node.address();
    o.ucx.tls = tls;
    o.ucx.net_devices = "lo";
    auto t = RemoteTier::Connect(o);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }

  TierKvOffloadOptions OffloadOptions(uint64_t seq, int32_t cache) {
    return {seq, static_cast<int32_t>(config().num_hidden_layers),
            static_cast<int32_t>(config().num_key_value_heads), cache};
  }

  static void ExpectSame(const DecodeRun& want, const DecodeRun& got, const std::string& what) {
    ASSERT_EQ(got.tokens.size(), want.tokens.size()) << what;
    EXPECT_EQ(got.tokens, want.tokens) << what;
    for (size_t i = 0; i < want.logits.size(); ++i) {
      ASSERT_EQ(std::memcmp(got.logits[i].data(), want.logits[i].data(),
                            sizeof(float) * want.logits[i].size()),
                0)
          << what << ": logits differ at decode step " << i;
    }
  }

  // Blocks a finished run left in the tier: every complete block of every layer and head.
  int64_t StoredBlocks() {
    return (kPromptTokens + kDecodeSteps) / 16 * config().num_hidden_layers *
           config().num_key_value_heads;
  }

  static cpu::CpuDecoder* decoder_;
  static DecodeRun* sparse_ref_;
  static DecodeRun* dense_ref_;
};

cpu::CpuDecoder* OffloadedDecodeTest::decoder_ = nullptr;
DecodeRun* OffloadedDecodeTest::sparse_ref_ = nullptr;
DecodeRun* OffloadedDecodeTest::dense_ref_ = nullptr;

TEST_F(OffloadedDecodeTest, TheSelectionReallyIsSparse) {
  // Sanity: the sparse and dense references differ (otherwise the comparisons below
  // would not show that the selected blocks are the ones read).
  EXPECT_NE(std::memcmp(sparse_ref_->logits.back().data(), dense_ref_->logits.back().data(),
                        sizeof(float) * config().vocab_size),
            0);
  const TokenSpans s = StridedPolicy::Select(kPromptTokens, kStride, true);
  int64_t tokens = 0;
  for (auto [b, e] : s) tokens += e - b;
  EXPECT_LT(tokens, kPromptTokens / 2);
}

TEST_F(OffloadedDecodeTest, LocalPoolSameTokens) {
  auto store = BlockStore::Create({.block_bytes = BlockBytes(), .capacity_blocks = 2048});
  ASSERT_TRUE(store.ok());
  LocalTier tier(std::shared_ptr<BlockStore>(*std::move(store)));
  auto off = TierKvOffload::Create(&tier, OffloadOptions(1, 0));
  ASSERT_TRUE(off.ok()) << off.status();
  StridedPolicy sparse(kStride, /*rotate=*/true);
  auto seq = decoder_->NewOffloadedSequence(off->get(), &sparse);
  ASSERT_TRUE(seq.ok()) << seq.status();
  ExpectSame(*sparse_ref_, Decode(*decoder_, **seq), "local pool, sparse");
  EXPECT_EQ(tier.store().stats().used_blocks, StoredBlocks());
  EXPECT_GT((*off)->stats().blocks_fetched, 0);
  ASSERT_TRUE((*off)->Close().ok());
  EXPECT_EQ(tier.store().stats().used_blocks, 0);
}

TEST_F(OffloadedDecodeTest, StorageNodeOverTcpSameTokens) {
  auto node = StartNode("tcp");
  ASSERT_NE(node, nullptr);
  auto tier = ConnectTo(*node, "tcp");
  ASSERT_NE(tier, nullptr);

  // Sparse, no block cache: every selected complete block crosses UCX at every step.
  {
    auto off = TierKvOffload::Create(tier.get(), OffloadOptions(10, 0));
    ASSERT_TRUE(off.ok()) << off.status();
    StridedPolicy sparse(kStride, /*rotate=*/true);
    auto seq = decoder_->NewOffloadedSequence(off->get(), &sparse);
    ASSERT_TRUE(seq.ok());
    ExpectSame(*sparse_ref_, Decode(*decoder_, **seq), "UCX tcp, sparse, no cache");
    const TierKvOffloadStats st = (*off)->stats();
    std::cerr << "tcp sparse no cache: " << st.blocks_fetched << " blocks fetched ("
              << st.bytes_fetched << " bytes) over " << kDecodeSteps << " steps\n";
    EXPECT_EQ(st.cache_hits, 0);
    EXPECT_EQ(st.blocks_fetched, st.blocks_requested);
    auto ns = tier->NodeStats();
    ASSERT_TRUE(ns.ok());
    EXPECT_EQ(ns->used_blocks, StoredBlocks());
    auto freed = (*off)->Close();
    ASSERT_TRUE(freed.ok());
    EXPECT_EQ(*freed, StoredBlocks());
  }
  // Sparse with a block cache and cross-token prefetch: only new blocks move. A second
  // client progresses UCX in the background, so prefetches overlap the step's compute.
  auto prefetching = ConnectTo(*node, "tcp", /*background_progress=*/true);
  ASSERT_NE(prefetching, nullptr);
  {
    auto off = TierKvOffload::Create(prefetching.get(), OffloadOptions(11, 32));
    ASSERT_TRUE(off.ok()) << off.status();
    StridedPolicy sparse(kStride, /*rotate=*/true, off->get());
    auto seq = decoder_->NewOffloadedSequence(off->get(), &sparse);
    ASSERT_TRUE(seq.ok());
    ExpectSame(*sparse_ref_, Decode(*decoder_, **seq), "UCX tcp, sparse, cache + prefetch");
    ASSERT_TRUE(sparse.prefetch_status().ok()) << sparse.prefetch_status();
    const TierKvOffloadStats st = (*off)->stats();
    std::cerr << "tcp sparse cache+prefetch: requested " << st.blocks_requested << ", hits "
              << st.cache_hits << ", fetched " << st.blocks_fetched << " (prefetched "
              << st.prefetched_blocks << ", late " << st.late_blocks << "), prefetch waits "
              << st.prefetch_waits << ", stalls " << st.stalls << "\n";
    // Sink and local blocks stay cached; the rotating strided blocks are prefetched one
    // token ahead; only blocks that completed during the step itself (and the first
    // step's) are fetched late.
    EXPECT_GT(st.cache_hits, st.blocks_requested / 3);
    EXPECT_GT(st.prefetched_blocks, 4 * st.late_blocks);
    EXPECT_EQ(st.blocks_fetched, st.prefetched_blocks + st.late_blocks);
    EXPECT_EQ(st.prefetch_waits, (kDecodeSteps - 1) * config().num_hidden_layers);
    ASSERT_TRUE((*off)->Close().ok());
  }
  // Full attention: the whole cache moves every step ("offload everything").
  {
    auto off = TierKvOffload::Create(tier.get(), OffloadOptions(12, 0));
    ASSERT_TRUE(off.ok());
    auto seq = decoder_->NewOffloadedSequence(off->get());
    ASSERT_TRUE(seq.ok());
    ExpectSame(*dense_ref_, Decode(*decoder_, **seq), "UCX tcp, dense");
    ASSERT_TRUE((*off)->Close().ok());
  }
  auto ns = tier->NodeStats();
  ASSERT_TRUE(ns.ok());
  EXPECT_EQ(ns->used_blocks, 0);
  EXPECT_EQ(ns->sequences, 0);
}

TEST_F(OffloadedDecodeTest, StorageNodeOverSharedMemorySameTokens) {
  auto node = StartNode("sm");
  ASSERT_NE(node, nullptr);
  auto tier = ConnectTo(*node, "sm");
  ASSERT_NE(tier, nullptr);
  auto off = TierKvOffload::Create(tier.get(), OffloadOptions(20, 32));
  ASSERT_TRUE(off.ok()) << off.status();
  StridedPolicy sparse(kStride, /*rotate=*/true, off->get());
  auto seq = decoder_->NewOffloadedSequence(off->get(), &sparse);
  ASSERT_TRUE(seq.ok());
  ExpectSame(*sparse_ref_, Decode(*decoder_, **seq), "UCX shared memory, sparse, cache");
  const TierKvOffloadStats st = (*off)->stats();
  std::cerr << "sm sparse cache+prefetch: requested " << st.blocks_requested << ", hits "
            << st.cache_hits << ", fetched " << st.blocks_fetched << " (prefetched "
            << st.prefetched_blocks << ", late " << st.late_blocks << "), prefetch waits "
            << st.prefetch_waits << ", stalls " << st.stalls << "\n";
  ASSERT_TRUE((*off)->Close().ok());
}

TEST_F(OffloadedDecodeTest, CorruptedTierBlocksChangeTheResult) {
  // Negative control: the decode step really uses the bytes in the node. Overwrite a sink
  // block (always selected) through a second client; the next step's logits change.
  auto node = StartNode("tcp");
  ASSERT_NE(node, nullptr);
  auto tier = ConnectTo(*node, "tcp");
  auto other = ConnectTo(*node, "tcp");
  ASSERT_TRUE(tier != nullptr && other != nullptr);
  auto off = TierKvOffload::Create(tier.get(), OffloadOptions(30, 0));
  ASSERT_TRUE(off.ok());
  StridedPolicy sparse(kStride, /*rotate=*/true);
  auto seq = decoder_->NewOffloadedSequence(off->get(), &sparse);
  ASSERT_TRUE(seq.ok());
  std::vector<float> logits;
  ASSERT_TRUE(decoder_->Prefill(**seq, Prompt(config().vocab_size), &logits).ok());
  std::vector<float> garbage(BlockBytes() / sizeof(float), 0.5f);
  const std::byte* g = reinterpret_cast<const std::byte*>(garbage.data());
  ASSERT_TRUE(other->WriteBlocks(30, {{0, 0, 1}}, {&g, 1}).ok());
  ASSERT_TRUE(decoder_->Decode(**seq, ArgMax(logits), &logits).ok());
  EXPECT_NE(
      std::memcmp(logits.data(), sparse_ref_->logits[0].data(), sizeof(float) * logits.size()), 0);
}

TEST_F(OffloadedDecodeTest, DeadNodeFailsTheStepAndTheSequence) {
  auto node = StartNode("tcp");
  ASSERT_NE(node, nullptr);
  auto tier = ConnectTo(*node, "tcp");
  ASSERT_NE(tier, nullptr);
  auto off = TierKvOffload::Create(tier.get(), OffloadOptions(40, 0));
  ASSERT_TRUE(off.ok());
  StridedPolicy sparse(kStride, /*rotate=*/true);
  auto seq = decoder_->NewOffloadedSequence(off->get(), &sparse);
  ASSERT_TRUE(seq.ok());
  std::vector<float> logits;
  ASSERT_TRUE(decoder_->Prefill(**seq, Prompt(config().vocab_size), &logits).ok());
  ASSERT_TRUE(node->Stop(SIGKILL).ok());
  absl::Status s = decoder_->Decode(**seq, ArgMax(logits), &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("is unreachable"), std::string::npos) << s;
  s = decoder_->Decode(**seq, 5, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  // The wrong block size is refused up front.
  auto store = BlockStore::Create({.block_bytes = 4096, .capacity_blocks = 4});
  ASSERT_TRUE(store.ok());
  LocalTier small(std::shared_ptr<BlockStore>(*std::move(store)));
  auto bad = TierKvOffload::Create(&small, OffloadOptions(1, 0));
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(decoder_->NewOffloadedSequence(bad->get()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace apr::kvstore
