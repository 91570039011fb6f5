// The offloaded KV cache end to end on the GPU (tag "gpu"; docs/CUDA.md "KV offload"):
// decoding with the cache in a local pinned pool or in a storage node (UCX tcp and shared
// memory) gives bit-identical logits and tokens to the resident cache with the same sparse
// selection (same bytes, same kernels); the tier holds every complete block byte for byte
// (prefill and write-back); stalls are counted and change nothing; the block cache fetches
// exactly the difference a CPU model of the plan computes; full offload refetches every
// block; a cache sharded over two storage nodes decodes as over one; and the key-summary
// calibration's selections against the exact full row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cache_plan.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/testing/storage_node_process.h"
#include "runtime/safetensors.h"

namespace apr::cuda {
namespace {

using kvstore::testing::StorageNodeProcess;

// The apr-tiny golden prompt (real text, 2048 tokens).
std::vector<int32_t> RealTokens() {
  auto f = SafetensorsFile::Open("tests/golden/apr-tiny.logits.safetensors");
  if (!f.ok()) return {};
  const TensorView* ids = (*f)->Find("p1.ids");
  if (ids == nullptr) return {};
  const auto* id64 = reinterpret_cast<const int64_t*>(ids->data);
  return std::vector<int32_t>(id64, id64 + ids->numel());
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

struct Model {
  std::string dir;
  int prompt, steps;
  std::vector<int32_t> tokens;
  int64_t block_bytes;
  std::vector<int> parts = {};  // prompt prefilled in calls of these sizes; empty: one call
};

Model AprTiny() { return {"models/apr-tiny", 700, 130, RealTokens(), 2 * 16 * 64 * 2}; }
Model TinyLlama3() {
  return {"tests/golden/models/tiny-llama3", 600, 130, RandomTokens(900, 512, 5), 2 * 16 * 16 * 2};
}

CudaDecoderOptions SparseOptions(int budget = 256, int calibration = 4) {
  CudaDecoderOptions o;
  o.max_sequences = 2;
  o.prefill_chunk = 256;
  o.sparse.enabled = true;
  o.sparse.budget_tokens = budget;
  o.sparse.calibration_step = calibration;
  o.sparse.calibration_source = CalibrationSource::kKeySummary;
  o.predictor_weights = RandomPredictorWeights(6);
  return o;
}

// SparseOptions on storage nodes over UCX tcp, eager (a remote step is not replayable).
CudaDecoderOptions RemoteOverTcp() {
  CudaDecoderOptions o = SparseOptions();
  o.placement = KvPlacement::kRemote;
  o.use_graphs = false;
  o.offload.ucx_tls = "tcp";
  return o;
}

// Blocks in use on `node` (-1, with a failure, when its stats cannot be read).
int64_t UsedBlocks(const StorageNodeProcess& node) {
  kvstore::RemoteTierOptions ro;
  ro.address = node.address();
  ro.ucx.tls = "tcp";
  ro.ucx.net_devices = "lo";
  auto tier = kvstore::RemoteTier::Connect(ro);
  EXPECT_TRUE(tier.ok()) << tier.status();
  if (!tier.ok()) return -1;
  auto st = (*tier)->NodeStats();
  EXPECT_TRUE(st.ok()) << st.status();
  return st.ok() ? st->used_blocks : -1;
}

// A storage node on 127.0.0.1 for blocks of `block_bytes`.
// On `port` when it is not 0 (a node restarted at its address).
std::unique_ptr<StorageNodeProcess> StartNode(int64_t block_bytes, const std::string& tls,
                                              int port = 0) {
  std::vector<std::string> flags = {"--capacity_blocks=200000",
                                    absl::StrCat("--block_bytes=", block_bytes),
                                    absl::StrCat("--ucx_tls=", tls), "--ucx_net_devices=lo"};
  if (port != 0) flags.push_back(absl::StrCat("--grpc_port=", port));
  auto n =
      StorageNodeProcess::Start(kvstore::testing::StorageNodeBinary(), flags, absl::Seconds(60));
  EXPECT_TRUE(n.ok()) << n.status();
  return n.ok() ? *std::move(n) : nullptr;
}

struct DecodeRun {
  std::unique_ptr<CudaDecoder> decoder;
  std::unique_ptr<Sequence> seq;
  std::vector<std::vector<float>> logits;  // prefill's last, then one per step
  std::vector<int32_t> generated;          // greedy: the tokens chosen
  // [step][layer][kv head]: the blocks attended (lists), when recorded.
  std::vector<std::vector<std::vector<CudaDecoder::BlockList>>> lists;
  std::vector<OffloadStats> stats;  // after prefill, then after each step
  absl::Status status;
};

int Argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Prefills m.prompt tokens, then decodes m.steps: teacher-forced from m.tokens, or greedy.
// `before_step(t, decoder)`, when given, runs before decode step t (a test kills a node
// there, or starts another sequence).
DecodeRun Decode(const Model& m, const CudaDecoderOptions& o, bool record_lists = false,
                 bool greedy = false,
                 const std::function<void(int, CudaDecoder&)>& before_step = nullptr) {
  DecodeRun r;
  auto d = CudaDecoder::Load(m.dir, o);
  if (!d.ok()) {
    r.status = d.status();
    return r;
  }
  r.decoder = *std::move(d);
  CudaDecoder& dec = *r.decoder;
  r.seq = dec.NewSequence();
  r.logits.emplace_back();
  const std::vector<int> parts = m.parts.empty() ? std::vector<int>{m.prompt} : m.parts;
  int done = 0;
  for (int part : parts) {
    r.status = dec.Prefill(*r.seq, absl::MakeConstSpan(m.tokens).subspan(done, part), &r.logits[0]);
    if (!r.status.ok()) return r;
    done += part;
  }
  if (done != m.prompt) r.status = absl::InvalidArgumentError("the parts do not add up");
  if (!r.status.ok()) return r;
  r.stats.push_back(dec.offload_stats());
  int32_t next = greedy ? Argmax(r.logits[0]) : m.tokens[m.prompt];
  for (int t = 0; t < m.steps; ++t) {
    if (before_step) before_step(t, dec);
    r.logits.emplace_back();
    r.status = dec.Decode(*r.seq, next, &r.logits.back());
    if (!r.status.ok()) return r;
    r.stats.push_back(dec.offload_stats());
    if (greedy) r.generated.push_back(next);
    next = greedy ? Argmax(r.logits.back()) : m.tokens[m.prompt + t + 1];
    if (record_lists) {
      r.lists.emplace_back();
      for (int l = 0; l < static_cast<int>(dec.config().num_hidden_layers); ++l) {
        if (l < dec.sparse().dense_layers) {  // dense: no list
          r.lists.back().emplace_back();
          continue;
        }
        auto b = dec.LastBlockLists(l);
        if (!b.ok()) {
          r.status = b.status();
          return r;
        }
        r.lists.back().push_back((*b)[0]);
      }
    }
  }
  return r;
}

// Number of steps whose logits differ in any bit.
int BitDifferences(const DecodeRun& a, const DecodeRun& b) {
  if (a.logits.size() != b.logits.size()) return -1;
  int diff = 0;
  for (size_t i = 0; i < a.logits.size(); ++i) {
    if (a.logits[i].size() != b.logits[i].size() ||
        std::memcmp(a.logits[i].data(), b.logits[i].data(), a.logits[i].size() * sizeof(float)) !=
            0)
      ++diff;
  }
  return diff;
}

// Every complete block of the offloaded run's tier equals the resident run's GPU pool.
int64_t CheckTierEqualsResident(DecodeRun& off, DecodeRun& res) {
  CudaDecoder& od = *off.decoder;
  const int L = od.config().num_hidden_layers, nkv = od.config().num_key_value_heads;
  const int full = static_cast<int>(off.seq->length() / kBlockTokens);
  int64_t checked = 0;
  for (int l = 0; l < L; ++l) {
    for (int g = 0; g < nkv; ++g) {
      for (int b = 0; b < full; ++b) {
        auto t = od.ReadKvBlock(*off.seq, l, g, b, /*from_tier=*/true);
        auto r = res.decoder->ReadKvBlock(*res.seq, l, g, b, /*from_tier=*/false);
        EXPECT_TRUE(t.ok()) << t.status() << " layer " << l << " head " << g << " block " << b;
        EXPECT_TRUE(r.ok()) << r.status();
        if (!t.ok() || !r.ok()) return checked;
        EXPECT_EQ(*t, *r) << "layer " << l << " head " << g << " block " << b;
        if (*t != *r) return checked;
        ++checked;
      }
    }
  }
  return checked;
}

void PrintStats(const char* what, const OffloadStats& s, int64_t steps) {
  std::printf(
      "%-28s steps %ld: fetched %ld blocks (%.1f/step, %.2f MB), hits %ld of %ld predicted "
      "(%.1f%%), waits %ld, stalls %ld, written %ld blocks, remote host stalls %ld (%.3f s)\n",
      what, long(steps), long(s.blocks_fetched),
      double(s.blocks_fetched) / std::max<int64_t>(1, steps), s.bytes_fetched / 1e6,
      long(s.prefetch_hits), long(s.predicted_blocks),
      100.0 * s.prefetch_hits / std::max<int64_t>(1, s.predicted_blocks), long(s.prefetch_waits),
      long(s.prefetch_stalls), long(s.blocks_written), long(s.remote_host_stalls),
      s.remote_host_stall_seconds);
}

class OffloadMatches : public ::testing::TestWithParam<int> {};

TEST_P(OffloadMatches, ResidentLocalAndRemoteAreBitIdentical) {
  const Model m = GetParam() == 0 ? AprTiny() : TinyLlama3();
  ASSERT_GE(static_cast<int>(m.tokens.size()), m.prompt + m.steps + 1);
  const CudaDecoderOptions base = SparseOptions();
  DecodeRun resident = Decode(m, base, /*record_lists=*/true);
  ASSERT_TRUE(resident.status.ok()) << resident.status;

  // group: predict_group_layers (0: the default); the models have 6 and 4 layers, so 5
  // leaves a short last group and 32 makes one group of all.
  struct Variant {
    std::string name;
    KvPlacement placement;
    bool graphs;
    int delay_us;
    std::string tls;  // remote
    int group = 0;
    int ctas = 0;
  };
  std::vector<Variant> variants = {
      {"local, graphs", KvPlacement::kHost, true, 0, ""},
      {"local, graphs, per layer", KvPlacement::kHost, true, 0, "", 1},
      {"local, graphs, groups of 5, 3 fetch CTAs", KvPlacement::kHost, true, 0, "", 5, 3},
      {"local, eager", KvPlacement::kHost, false, 0, ""},
      {"local, eager, one group, 1056 fetch CTAs", KvPlacement::kHost, false, 0, "", 32, 1056},
      // The delay comes once per group's fetches: per layer, every wait finds it pending.
      {"local, eager, fetch delayed", KvPlacement::kHost, false, 2000, "", 1},
      {"local, graphs, fetch delayed", KvPlacement::kHost, true, 2000, ""},
      {"remote tcp", KvPlacement::kRemote, false, 0, "tcp"},
  };
  if (GetParam() == 0) {
    variants.push_back({"remote sm", KvPlacement::kRemote, false, 0, "sm"});
    variants.push_back({"remote tcp, per layer", KvPlacement::kRemote, false, 0, "tcp", 1});
  }
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    CudaDecoderOptions o = base;
    o.placement = v.placement;
    o.use_graphs = v.graphs;
    o.offload.debug_fetch_delay_us = v.delay_us;
    if (v.group > 0) o.offload.predict_group_layers = v.group;
    o.offload.fetch_ctas = v.ctas;
    std::unique_ptr<StorageNodeProcess> node;
    if (v.placement == KvPlacement::kRemote) {
      node = StartNode(m.block_bytes, v.tls);
      ASSERT_NE(node, nullptr);
      o.offload.remote_address = node->address();
      o.offload.ucx_tls = v.tls;
    }
    DecodeRun off = Decode(m, o, /*record_lists=*/true);
    ASSERT_TRUE(off.status.ok()) << off.status;
    EXPECT_EQ(BitDifferences(off, resident), 0) << "logits differ from the resident cache's";
    EXPECT_EQ(off.lists, resident.lists) << "the selections differ";
    const int64_t checked = CheckTierEqualsResident(off, resident);
    const OffloadStats s = off.decoder->offload_stats();
    const int L = off.decoder->config().num_hidden_layers;
    EXPECT_EQ(s.prefetch_waits, int64_t{m.steps} * L);
    EXPECT_LE(s.prefetch_stalls, s.prefetch_waits);
    if (v.delay_us > 0) {
      // Nearly every layer of every step reaches its wait before its (delayed) fetch is
      // done; eagerly, the first step waits on prefill's fetch, which is complete. Not all:
      // a host thread descheduled for the delay finds a fetch done (seen once in 780).
      const int64_t can_stall = s.prefetch_waits - (v.graphs ? 0 : L);
      EXPECT_GE(s.prefetch_stalls, can_stall * 9 / 10);
    }
    EXPECT_EQ(s.decode_steps, m.steps);
    EXPECT_GT(s.blocks_fetched, 0);
    EXPECT_EQ(s.blocks_written, checked) << "every complete block written once";
    std::printf("%s %s: bit-identical to resident over %d steps; %ld tier blocks equal\n",
                m.dir.c_str(), v.name.c_str(), m.steps, long(checked));
    PrintStats(v.name.c_str(), s, m.steps);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, OffloadMatches, ::testing::Values(0, 1), [](const auto& info) {
  return std::string(info.param == 0 ? "apr_tiny" : "tiny_llama3");
});

TEST(Offload, GreedyTokensMatchResident) {
  Model m = AprTiny();
  m.steps = 60;
  const CudaDecoderOptions base = SparseOptions();
  DecodeRun resident = Decode(m, base, false, /*greedy=*/true);
  ASSERT_TRUE(resident.status.ok()) << resident.status;
  CudaDecoderOptions o = base;
  o.placement = KvPlacement::kHost;
  DecodeRun off = Decode(m, o, false, /*greedy=*/true);
  ASSERT_TRUE(off.status.ok()) << off.status;
  EXPECT_EQ(off.generated, resident.generated);
  EXPECT_EQ(BitDifferences(off, resident), 0);
}

// A prompt prefilled in parts (chunked admission): with parts on the prefill chunk's
// boundaries, the same logits as one call, resident or offloaded; with parts that end
// inside blocks, offloaded equals resident in the same parts, and every complete block
// reaches the tier exactly once (a block an earlier part left incomplete included).
TEST(Offload, PromptInPartsMatches) {
  Model m = AprTiny();
  m.steps = 40;
  const CudaDecoderOptions base = SparseOptions();  // prefill_chunk 256
  DecodeRun whole = Decode(m, base, /*record_lists=*/true);
  ASSERT_TRUE(whole.status.ok()) << whole.status;
  auto node = StartNode(m.block_bytes, "tcp");
  ASSERT_NE(node, nullptr);
  for (const std::vector<int>& parts :
       {std::vector<int>{256, 256, 188}, std::vector<int>{250, 262, 120, 68}}) {
    Model pm = m;
    pm.parts = parts;
    const bool aligned = parts[0] == 256;
    DecodeRun resident = Decode(pm, base, /*record_lists=*/true);
    ASSERT_TRUE(resident.status.ok()) << resident.status;
    if (aligned) {
      EXPECT_EQ(BitDifferences(resident, whole), 0) << "resident in parts vs one call";
    }
    for (KvPlacement placement : {KvPlacement::kHost, KvPlacement::kRemote}) {
      const bool remote = placement == KvPlacement::kRemote;
      SCOPED_TRACE(
          absl::StrCat(aligned ? "aligned" : "unaligned", " parts, ", remote ? "remote" : "local"));
      CudaDecoderOptions o = base;
      o.placement = placement;
      if (remote) {
        o.use_graphs = false;
        o.offload.remote_address = node->address();
        o.offload.ucx_tls = "tcp";
      }
      DecodeRun off = Decode(pm, o, /*record_lists=*/true);
      ASSERT_TRUE(off.status.ok()) << off.status;
      EXPECT_EQ(BitDifferences(off, resident), 0);
      EXPECT_EQ(off.lists, resident.lists);
      const int64_t checked = CheckTierEqualsResident(off, resident);
      EXPECT_EQ(off.decoder->offload_stats().blocks_written, checked)
          << "every complete block written once";
      // No more prompt once decoding has begun: the prompt's blocks have left the GPU.
      EXPECT_EQ(off.decoder->Prefill(*off.seq, absl::MakeConstSpan(m.tokens).subspan(0, 8), nullptr)
                    .code(),
                absl::StatusCode::kFailedPrecondition);
    }
  }
}

// Sharding (docs/KVSTORE.md "Sharding"): the cache over two storage nodes (KV head h on
// node h % 2) gives the logits and selections of one node bit for bit, the tier holds the
// resident run's blocks, and each node holds half of them (apr-tiny: 2 KV heads).
TEST(Offload, RemoteOverTwoNodesMatchesOneNode) {
  const Model m = AprTiny();
  const CudaDecoderOptions base = SparseOptions();
  DecodeRun resident = Decode(m, base, /*record_lists=*/true);
  ASSERT_TRUE(resident.status.ok()) << resident.status;
  auto one = StartNode(m.block_bytes, "tcp");
  auto s0 = StartNode(m.block_bytes, "tcp");
  auto s1 = StartNode(m.block_bytes, "tcp");
  ASSERT_TRUE(one && s0 && s1);
  CudaDecoderOptions o = base;
  o.placement = KvPlacement::kRemote;
  o.use_graphs = false;
  o.offload.ucx_tls = "tcp";
  CudaDecoderOptions single_options = o;
  single_options.offload.remote_address = one->address();
  DecodeRun single = Decode(m, single_options, /*record_lists=*/true);
  ASSERT_TRUE(single.status.ok()) << single.status;
  CudaDecoderOptions sharded_options = o;
  sharded_options.offload.remote_addresses = {s0->address(), s1->address()};
  DecodeRun sharded = Decode(m, sharded_options, /*record_lists=*/true);
  ASSERT_TRUE(sharded.status.ok()) << sharded.status;
  EXPECT_EQ(BitDifferences(sharded, single), 0) << "two nodes' logits differ from one node's";
  EXPECT_EQ(sharded.lists, single.lists) << "the selections differ";
  const int64_t checked = CheckTierEqualsResident(sharded, resident);
  EXPECT_EQ(sharded.decoder->offload_stats().blocks_written, checked);
  std::vector<int64_t> used;
  for (const auto* node : {one.get(), s0.get(), s1.get()}) used.push_back(UsedBlocks(*node));
  EXPECT_EQ(used[0], checked);
  EXPECT_EQ(used[1], checked / 2);
  EXPECT_EQ(used[2], checked / 2);
  std::printf("two storage nodes: bit-identical to one over %d steps; %ld blocks, %ld + %ld\n",
              m.steps, long(checked), long(used[1]), long(used[2]));
  PrintStats("remote tcp, 2 nodes", sharded.decoder->offload_stats(), m.steps);
}

// Replication 2 (docs/KVSTORE.md "Replication"): the cache on two storage nodes, one copy
// each. Either node SIGKILLed mid-decode changes nothing: no error, logits and selections
// bit-identical to a single node's, and the survivor holds every block of the resident run.
TEST(Offload, RemoteReplicatedSurvivesANodeLoss) {
  const Model m = AprTiny();
  DecodeRun resident = Decode(m, SparseOptions(), /*record_lists=*/true);
  ASSERT_TRUE(resident.status.ok()) << resident.status;
  const CudaDecoderOptions o = RemoteOverTcp();
  auto one = StartNode(m.block_bytes, "tcp");
  ASSERT_NE(one, nullptr);
  CudaDecoderOptions single_options = o;
  single_options.offload.remote_address = one->address();
  DecodeRun single = Decode(m, single_options, /*record_lists=*/true);
  ASSERT_TRUE(single.status.ok()) << single.status;
  constexpr int kKillAt = 40;
  for (int lost = 0; lost < 2; ++lost) {
    SCOPED_TRACE(absl::StrCat("node ", lost, " killed before step ", kKillAt));
    std::unique_ptr<StorageNodeProcess> nodes[2] = {StartNode(m.block_bytes, "tcp"),
                                                    StartNode(m.block_bytes, "tcp")};
    ASSERT_TRUE(nodes[0] && nodes[1]);
    CudaDecoderOptions replicated = o;
    replicated.offload.remote_addresses = {nodes[0]->address(), nodes[1]->address()};
    replicated.offload.replication = 2;
    DecodeRun run =
        Decode(m, replicated, /*record_lists=*/true, /*greedy=*/false, [&](int t, CudaDecoder&) {
          if (t != kKillAt) return;
          auto killed = nodes[lost]->Stop(SIGKILL);
          EXPECT_TRUE(killed.ok()) << killed.status();
        });
    ASSERT_TRUE(run.status.ok()) << run.status;
    EXPECT_EQ(BitDifferences(run, single), 0) << "logits differ from one node's";
    EXPECT_EQ(run.lists, single.lists) << "the selections differ";
    const int64_t checked = CheckTierEqualsResident(run, resident);
    const int64_t kept = UsedBlocks(*nodes[1 - lost]);
    EXPECT_EQ(kept, checked) << "the survivor holds every block";
    std::printf(
        "replication 2, node %d killed before step %d of %d: bit-identical to one node; "
        "survivor holds %ld of %ld blocks\n",
        lost, kKillAt, m.steps, long(kept), long(checked));
  }
}

// Re-replication on the GPU path (kvstore::CopyRestorer, as the CPU worker): node 0 is
// killed before step 40, restarted at its port before step 70, when a second sequence is
// created, which restores its copy from node 1 first; node 1 is killed before step 100.
// The first sequence goes on bit-identical to one node, with the same selections, and the
// restarted node holds what node 1 held when it was restored.
TEST(Offload, RemoteReplicatedRestoresARestartedNode) {
  const Model m = AprTiny();
  ASSERT_GE(m.steps, 110);
  const CudaDecoderOptions o = RemoteOverTcp();
  auto one = StartNode(m.block_bytes, "tcp");
  ASSERT_NE(one, nullptr);
  CudaDecoderOptions single_options = o;
  single_options.offload.remote_address = one->address();
  DecodeRun single = Decode(m, single_options, /*record_lists=*/true);
  ASSERT_TRUE(single.status.ok()) << single.status;
  const int port = kvstore::testing::FreePortForRestarts();
  ASSERT_NE(port, 0);
  std::unique_ptr<StorageNodeProcess> nodes[2] = {StartNode(m.block_bytes, "tcp", port),
                                                  StartNode(m.block_bytes, "tcp")};
  ASSERT_TRUE(nodes[0] && nodes[1]);
  CudaDecoderOptions replicated = o;
  replicated.offload.remote_addresses = {nodes[0]->address(), nodes[1]->address()};
  replicated.offload.replication = 2;
  std::unique_ptr<Sequence> second;
  int64_t restored = -1, held = -1;
  DecodeRun run =
      Decode(m, replicated, /*record_lists=*/true, /*greedy=*/false, [&](int t, CudaDecoder& dec) {
        if (t == 40) {
          EXPECT_TRUE(nodes[0]->Stop(SIGKILL).ok());
        }
        if (t == 70) {
          nodes[0] = StartNode(m.block_bytes, "tcp", port);
          ASSERT_NE(nodes[0], nullptr);
          held = UsedBlocks(*nodes[1]);
          second = dec.NewSequence();
          std::vector<float> logits;
          absl::Status s =
              dec.Prefill(*second, absl::MakeConstSpan(m.tokens).subspan(0, 40), &logits);
          EXPECT_TRUE(s.ok()) << s;
          // Node 0 now holds the copy of the first sequence and the second's blocks.
          restored = UsedBlocks(*nodes[0]);
          EXPECT_EQ(restored, UsedBlocks(*nodes[1]));
        }
        if (t == 100) {
          EXPECT_TRUE(nodes[1]->Stop(SIGKILL).ok());
        }
      });
  ASSERT_TRUE(run.status.ok()) << run.status;
  EXPECT_EQ(BitDifferences(run, single), 0) << "logits differ from one node's";
  EXPECT_EQ(run.lists, single.lists) << "the selections differ";
  EXPECT_GT(held, 0);
  EXPECT_GT(restored, held) << "node 0 was not restored (it holds only the new sequence)";
  second.reset();  // before the decoder it belongs to (run's, destroyed first)
  std::printf(
      "replication 2, node 0 killed before step 40, restarted and restored before "
      "step 70 (%ld blocks), node 1 killed before step 100: bit-identical to one node\n",
      long(restored));
}

// The reference's skip_2layer with an offloaded cache: the first 2 layers (1 of
// tiny-llama3's 2) attend densely
// over their resident KV (cuda_decoder_dense_layers.cc), the others over fetched blocks.
// Same bytes, same kernels as the resident cache with dense_layers 2, so bit-identical
// logits and the same selections; the tier still holds every layer's complete blocks
// (the dense layers' written from their resident pool); only the sparse layers wait for
// fetches. Local (graphs, eager, a prompt in unaligned parts) and remote.
TEST(Offload, DenseLayersStayResident) {
  auto node = StartNode(AprTiny().block_bytes, "tcp");
  ASSERT_NE(node, nullptr);
  for (int model = 0; model < 2; ++model) {
    Model m = model == 0 ? AprTiny() : TinyLlama3();
    CudaDecoderOptions base = SparseOptions();
    // tiny-llama3 has 2 layers, and at least one must stay sparse: 1 dense there.
    const int dense = model == 0 ? 2 : 1;
    base.sparse.dense_layers = dense;
    struct Variant {
      std::string name;
      KvPlacement placement;
      bool graphs;
      std::vector<int> parts;
    };
    std::vector<Variant> variants = {{"local, graphs", KvPlacement::kHost, true, {}},
                                     {"local, eager", KvPlacement::kHost, false, {}},
                                     {"local, graphs, parts 250+262+rest",
                                      KvPlacement::kHost,
                                      true,
                                      {250, 262, m.prompt - 512}}};
    if (model == 0) variants.push_back({"remote tcp", KvPlacement::kRemote, false, {}});
    for (const Variant& v : variants) {
      SCOPED_TRACE(absl::StrCat(m.dir, ", ", v.name));
      Model pm = m;
      pm.parts = v.parts;
      DecodeRun resident = Decode(pm, base, /*record_lists=*/true);
      ASSERT_TRUE(resident.status.ok()) << resident.status;
      CudaDecoderOptions o = base;
      o.placement = v.placement;
      o.use_graphs = v.graphs;
      if (v.placement == KvPlacement::kRemote) {
        o.offload.remote_address = node->address();
        o.offload.ucx_tls = "tcp";
      }
      DecodeRun off = Decode(pm, o, /*record_lists=*/true);
      ASSERT_TRUE(off.status.ok()) << off.status;
      const int diffs = BitDifferences(off, resident);
      EXPECT_EQ(diffs, 0) << "logits differ from the resident cache's";
      EXPECT_EQ(off.lists, resident.lists) << "the selections differ";
      const int64_t checked = CheckTierEqualsResident(off, resident);
      const OffloadStats st = off.decoder->offload_stats();
      const int L = off.decoder->config().num_hidden_layers;
      const int nkv = off.decoder->config().num_key_value_heads;
      EXPECT_EQ(checked, int64_t{L} * nkv * (off.seq->length() / kBlockTokens))
          << "every complete block of every layer in the tier";
      EXPECT_EQ(st.blocks_written, checked) << "every complete block written once";
      EXPECT_EQ(st.prefetch_waits, int64_t{m.steps} * (L - dense)) << "dense layers never wait";
      std::printf(
          "dense_layers %d, %s %s: %d of %zu steps' logits differ from resident; %ld tier "
          "blocks equal (dense layers' included)\n",
          dense, m.dir.c_str(), v.name.c_str(), diffs, off.logits.size(), long(checked));
      PrintStats(v.name.c_str(), st, m.steps);
    }
  }
}

// predictor-hybrid offloaded (cuda_decoder_hybrid.cc): a quarter of the predicted blocks
// come from the query at the step; the ones the block cache lacks are fetched on the
// compute stream into slots of their own. Same lists and bit-identical logits as the
// resident cache with hybrid on (the kernel's sets against the CPU policy:
// trained_predictor_test HybridSelectsTheCpuPolicysBlocks), and the query's blocks do
// change the lists (against hybrid off). Remote is refused (Unimplemented).
TEST(Offload, HybridMatchesResident) {
  Model m = AprTiny();
  m.steps = 60;
  CudaDecoderOptions base = SparseOptions();  // budget 256: 8 blocks, 2 from the query
  DecodeRun plain = Decode(m, base, /*record_lists=*/true);
  ASSERT_TRUE(plain.status.ok()) << plain.status;
  base.sparse.hybrid = true;
  DecodeRun resident = Decode(m, base, /*record_lists=*/true);
  ASSERT_TRUE(resident.status.ok()) << resident.status;
  int changed = 0, lists = 0;
  for (size_t s = 0; s < resident.lists.size(); ++s) {
    for (size_t l = 0; l < resident.lists[s].size(); ++l) {
      for (size_t g = 0; g < resident.lists[s][l].size(); ++g) {
        changed += resident.lists[s][l][g] != plain.lists[s][l][g];
        ++lists;
      }
    }
  }
  std::printf("hybrid (resident): %d of %d lists differ from the CNN-only selection\n", changed,
              lists);
  EXPECT_GT(changed, 0) << "the query's blocks never changed a list";
  for (bool graphs : {true, false}) {
    SCOPED_TRACE(graphs ? "local, graphs" : "local, eager");
    CudaDecoderOptions o = base;
    o.placement = KvPlacement::kHost;
    o.use_graphs = graphs;
    DecodeRun off = Decode(m, o, /*record_lists=*/true);
    ASSERT_TRUE(off.status.ok()) << off.status;
    const int diffs = BitDifferences(off, resident);
    EXPECT_EQ(diffs, 0) << "logits differ from the resident cache's";
    EXPECT_EQ(off.lists, resident.lists) << "the selections differ";
    std::printf("hybrid, %s: %d of %zu steps' logits differ from resident\n",
                graphs ? "local, graphs" : "local, eager", diffs, off.logits.size());
    PrintStats(graphs ? "hybrid local, graphs" : "hybrid local, eager",
               off.decoder->offload_stats(), m.steps);
  }
  CudaDecoderOptions r = base;
  r.placement = KvPlacement::kRemote;
  r.offload.remote_address = "127.0.0.1:1";  // refused before connecting
  EXPECT_EQ(CudaDecoder::Load("models/apr-tiny", r).status().code(),
            absl::StatusCode::kUnimplemented);
}

// The device plan's counts equal a CPU model's (cache_plan.h) fed with the same wanted
// sets: the cache fetches exactly the difference. A small cache forces evictions.
TEST(Offload, CacheFetchesOnlyTheDifference) {
  Model m = AprTiny();
  m.steps = 150;
  CudaDecoderOptions o = SparseOptions(/*budget=*/256, /*calibration=*/5);
  o.placement = KvPlacement::kHost;
  o.offload.extra_cache_slots = 3;
  DecodeRun r = Decode(m, o, /*record_lists=*/true);
  ASSERT_TRUE(r.status.ok()) << r.status;
  CudaDecoder& d = *r.decoder;
  const int L = d.config().num_hidden_layers, nkv = d.config().num_key_value_heads;
  std::vector<CacheImageModel> model(L * nkv, CacheImageModel(d.cache_slots()));
  for (auto& im : model) im.Seed(SeedBlocks(m.prompt));
  int64_t total_fetched = 0, total_hits = 0, evicting_steps = 0;
  for (int s = 1; s <= m.steps; ++s) {
    // W_s (the blocks step s attended) was planned by the previous step (or prefill).
    const int len = m.prompt + s;
    CachePlanCounts sum;
    for (int l = 0; l < L; ++l) {
      for (int g = 0; g < nkv; ++g) {
        std::vector<int32_t> w;
        for (const auto& [blk, first] : r.lists[s - 1][l][g]) w.push_back(blk);
        const CachePlanCounts c = model[l * nkv + g].PlanWanted(len, w);
        ASSERT_FALSE(c.error) << "step " << s;
        sum.fetched += c.fetched;
        sum.hits += c.hits;
        sum.predicted += c.predicted;
      }
    }
    const OffloadStats& now = r.stats[s - 1];
    const OffloadStats before = s >= 2 ? r.stats[s - 2] : OffloadStats();
    EXPECT_EQ(now.blocks_fetched - before.blocks_fetched, sum.fetched) << "step " << s;
    EXPECT_EQ(now.prefetch_hits - before.prefetch_hits, sum.hits) << "step " << s;
    EXPECT_EQ(now.predicted_blocks - before.predicted_blocks, sum.predicted) << "step " << s;
    total_fetched += sum.fetched;
    total_hits += sum.hits;
    evicting_steps += sum.fetched > 0;
  }
  std::printf("block cache (%d slots per head): %ld blocks fetched, %ld hits over %d steps\n",
              d.cache_slots(), long(total_fetched), long(total_hits), m.steps);
  EXPECT_GT(total_hits, 0);
  EXPECT_GT(total_fetched, 0);
}

// Full offload (the benchmark's baseline): a budget covering the whole context, blocks
// fetched again every step.
TEST(Offload, FullOffloadFetchesEveryPredictedBlock) {
  Model m = AprTiny();
  m.steps = 20;
  CudaDecoderOptions o = SparseOptions(/*budget=*/2048, /*calibration=*/0);
  DecodeRun resident = Decode(m, o);
  ASSERT_TRUE(resident.status.ok()) << resident.status;
  o.placement = KvPlacement::kHost;
  o.offload.reuse_cached_blocks = false;
  DecodeRun off = Decode(m, o);
  ASSERT_TRUE(off.status.ok()) << off.status;
  EXPECT_EQ(BitDifferences(off, resident), 0);
  const OffloadStats s = off.decoder->offload_stats();
  EXPECT_EQ(s.prefetch_hits, 0);
  EXPECT_EQ(s.blocks_fetched, s.predicted_blocks);
  // Every candidate of every step: (blocks - sink - local) per layer and head.
  EXPECT_GT(s.blocks_fetched, int64_t{m.steps} * 6 * 2 * 30);
  PrintStats("full offload (apr-tiny)", s, m.steps);
}

TEST(Offload, RejectsWhatItCannotDo) {
  CudaDecoderOptions o = SparseOptions();
  o.placement = KvPlacement::kHost;
  {
    CudaDecoderOptions x = o;
    x.sparse.enabled = false;
    x.max_budget_tokens = 256;
    EXPECT_EQ(CudaDecoder::Load("models/apr-tiny", x).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    CudaDecoderOptions x = o;
    x.sparse.dense_layers = 6;  // apr-tiny has 6 layers: none would be sparse
    EXPECT_EQ(CudaDecoder::Load("models/apr-tiny", x).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    CudaDecoderOptions x = o;
    x.sparse.calibration_source = CalibrationSource::kFullRow;
    EXPECT_EQ(CudaDecoder::Load("models/apr-tiny", x).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    CudaDecoderOptions x = o;
    x.offload.predict_group_layers = 0;
    EXPECT_EQ(CudaDecoder::Load("models/apr-tiny", x).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    CudaDecoderOptions x = o;
    x.offload.fetch_ctas = -1;
    EXPECT_EQ(CudaDecoder::Load("models/apr-tiny", x).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    CudaDecoderOptions x = o;
    x.placement = KvPlacement::kRemote;  // no node given
    EXPECT_EQ(CudaDecoder::Load("models/apr-tiny", x).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  auto d = CudaDecoder::Load("models/apr-tiny", o);
  ASSERT_TRUE(d.ok()) << d.status();
  auto s = (*d)->NewSequence();
  std::vector<float> l;
  EXPECT_EQ((*d)->Decode(*s, 1, &l).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*d)->Prefill(*s, std::vector<int32_t>(100, 7), &l).ok());
  ASSERT_TRUE((*d)->Prefill(*s, std::vector<int32_t>(70, 8), &l).ok());  // a second part
  ASSERT_TRUE((*d)->Decode(*s, 1, &l).ok());
  // Once decoding has begun the prompt's blocks have left the GPU: no more prompt.
  EXPECT_EQ((*d)->Prefill(*s, std::vector<int32_t>{1}, &l).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Calibration without the cache: selections with the key-summary row (two estimates)
// against the exact full row, on the resident cache where both can run; no calibration
// at all for scale. Overlap = share of the exact run's predicted blocks the other run
// chose at the same step, layer and head (teacher-forced, so the contexts agree).
TEST(Offload, KeySummaryCalibrationOverlap) {
  Model m = AprTiny();
  m.prompt = 1500;
  m.steps = 200;
  struct V {
    const char* name;
    CalibrationSource source;
    SummaryEstimate estimate;
    int calibration;
  };
  const V variants[] = {
      {"exact full row", CalibrationSource::kFullRow, SummaryEstimate::kCenterL2, 5},
      {"key summary, center + L2", CalibrationSource::kKeySummary, SummaryEstimate::kCenterL2, 5},
      {"key summary, Quest bound", CalibrationSource::kKeySummary, SummaryEstimate::kQuestBound, 5},
      {"no calibration", CalibrationSource::kFullRow, SummaryEstimate::kCenterL2, 0},
  };
  std::vector<DecodeRun> runs;
  for (const V& v : variants) {
    CudaDecoderOptions o = SparseOptions(/*budget=*/512, v.calibration);
    o.sparse.calibration_source = v.source;
    o.sparse.summary_estimate = v.estimate;
    runs.push_back(Decode(m, o, /*record_lists=*/true));
    ASSERT_TRUE(runs.back().status.ok()) << runs.back().status;
  }
  const int L = runs[0].decoder->config().num_hidden_layers;
  for (size_t i = 1; i < runs.size(); ++i) {
    double same = 0, total = 0, same20 = 0, total20 = 0;
    for (int s = 0; s < m.steps; ++s) {
      const int len = m.prompt + s + 1;
      const int lo = FirstLocalBlock(len);
      for (int l = 0; l < L; ++l) {
        for (size_t g = 0; g < runs[0].lists[s][l].size(); ++g) {
          std::set<int32_t> ref, got;
          for (const auto& [b, f] : runs[0].lists[s][l][g])
            if (b >= kSinkBlocks && b < lo) ref.insert(b);
          for (const auto& [b, f] : runs[i].lists[s][l][g])
            if (b >= kSinkBlocks && b < lo) got.insert(b);
          int both = 0;
          for (int32_t b : ref) both += got.count(b);
          same += both;
          total += ref.size();
          if (s < 20) {
            same20 += both;
            total20 += ref.size();
          }
        }
      }
    }
    std::printf(
        "calibration overlap with the exact full row (apr-tiny, random predictor, budget 512, "
        "every 5th step): %-26s %.3f over %d steps (first 20 steps %.3f)\n",
        variants[i].name, same / std::max(1.0, total), m.steps, same20 / std::max(1.0, total20));
    EXPECT_GT(total, 0);
    // The estimate every served placement uses (cluster/devices.cc) must keep the exact
    // row's choice: 0.977 measured on the H100 (2026-12-05). The Quest bound (0.33) is
    // printed for comparison, not held to it.
    if (variants[i].source == CalibrationSource::kKeySummary &&
        variants[i].estimate == SummaryEstimate::kCenterL2) {
      EXPECT_GE(same / std::max(1.0, total), 0.95) << variants[i].name;
    }
  }
}

}  // namespace
}  // namespace apr::cuda
