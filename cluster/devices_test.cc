// The worker's KV placement mapping (ApplyKvPlacement) and the CPU side of OpenDecoder;
// no GPU needed.
#include "cluster/devices.h"

#include <gtest/gtest.h>

#include "backends/cuda/cuda_decoder.h"

namespace apr::cluster {
namespace {

cuda::CudaDecoderOptions Sparse() {
  cuda::CudaDecoderOptions o;
  o.sparse.enabled = true;
  return o;
}

TEST(ApplyKvPlacement, DeviceMemoryIsResident) {
  cuda::CudaDecoderOptions o;
  o.placement = KvPlacement::kHost;
  ASSERT_TRUE(ApplyKvPlacement(DecoderOptions{}, &o).ok());
  EXPECT_EQ(o.placement, KvPlacement::kDevice);
}

TEST(ApplyKvPlacement, HostRamIsTheLocalTier) {
  DecoderOptions d;
  d.placement = KvPlacement::kHost;
  cuda::CudaDecoderOptions o = Sparse();
  ASSERT_TRUE(ApplyKvPlacement(d, &o).ok());
  EXPECT_EQ(o.placement, KvPlacement::kHost);
  EXPECT_EQ(o.offload.local_tier, nullptr);  // the decoder makes its own pool
}

TEST(ApplyKvPlacement, OffloadNeedsThePredictor) {
  for (KvPlacement p : {KvPlacement::kHost, KvPlacement::kRemote}) {
    DecoderOptions d;
    d.placement = p;
    d.storage_nodes = {"127.0.0.1:50071"};
    cuda::CudaDecoderOptions o;  // dense: no predictor.safetensors
    const absl::Status s = ApplyKvPlacement(d, &o);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("predictor.safetensors"), std::string::npos) << s;
  }
}

// Sharding (docs/KVSTORE.md): every rank of a group connects to every node of its group.
TEST(ApplyKvPlacement, EveryRankUsesEveryNodeOfItsGroup) {
  DecoderOptions d;
  d.placement = KvPlacement::kRemote;
  cuda::CudaDecoderOptions o = Sparse();
  EXPECT_EQ(ApplyKvPlacement(d, &o).code(), absl::StatusCode::kInvalidArgument);
  d.storage_nodes = {"10.0.0.1:50071", "10.0.0.2:50071"};
  for (int rank = 0; rank < 3; ++rank) {
    d.tp_rank = rank;
    d.tp_size = 4;
    o = Sparse();
    ASSERT_TRUE(ApplyKvPlacement(d, &o).ok());
    EXPECT_EQ(o.placement, KvPlacement::kRemote);
    EXPECT_EQ(o.offload.remote_addresses, d.storage_nodes) << "rank " << rank;
    EXPECT_EQ(o.offload.remote_address, "");
    EXPECT_EQ(o.offload.replication, 1);
    // The node's transports (the node may be on another host; "lo" would not reach it).
    EXPECT_EQ(o.offload.ucx_tls, "");
    EXPECT_EQ(o.offload.ucx_net_devices, "");
    EXPECT_FALSE(o.offload.tls.enabled());
    EXPECT_EQ(o.offload.auth_token_file, "");
  }
  // Two copies (docs/KVSTORE.md "Replication"): the factor reaches ConnectStorageNodes.
  d.storage_replication = 2;
  o = Sparse();
  ASSERT_TRUE(ApplyKvPlacement(d, &o).ok());
  EXPECT_EQ(o.offload.replication, 2);
}

// A secured node: the worker's certificate files and token file reach the decoder's tier
// client (RemoteTierOptions, cuda_decoder_offload.cc) as they reach the CPU worker's.
TEST(ApplyKvPlacement, TheSecuredNodesCredentialsReachTheTierClient) {
  DecoderOptions d;
  d.placement = KvPlacement::kRemote;
  d.storage_nodes = {"127.0.0.1:50071"};
  d.storage_tls = {"/certs/worker.pem", "/certs/worker.key", "/certs/ca.pem", "localhost"};
  d.storage_auth_token_file = "/secrets/kv-token";
  cuda::CudaDecoderOptions o = Sparse();
  ASSERT_TRUE(ApplyKvPlacement(d, &o).ok());
  EXPECT_EQ(o.offload.tls.cert_file, "/certs/worker.pem");
  EXPECT_EQ(o.offload.tls.key_file, "/certs/worker.key");
  EXPECT_EQ(o.offload.tls.ca_file, "/certs/ca.pem");
  EXPECT_EQ(o.offload.tls.server_name, "localhost");
  EXPECT_EQ(o.offload.auth_token_file, "/secrets/kv-token");
}

TEST(OpenDecoder, TheCpuWorkerKeepsItsCacheInProcess) {
  DecoderOptions d;
  d.placement = KvPlacement::kHost;
  EXPECT_EQ(OpenDecoder("cpu", "models/apr-tiny", d).status().code(),
            absl::StatusCode::kUnimplemented);
  auto dec = OpenDecoder("cpu", "models/apr-tiny");
  ASSERT_TRUE(dec.ok()) << dec.status();
  const OffloadCounters c = ReadOffloadCounters(**dec);
  EXPECT_EQ(c.fetch_bytes, 0);
  EXPECT_EQ(c.prefetch_hits, 0);
  EXPECT_EQ(c.prefetch_stalls, 0);
}

// AUTO on the CPU: the cache stays in process, as with the default placement.
TEST(OpenDecoder, TheCpuWorkerTakesAutoAsInProcess) {
  DecoderOptions d;
  d.placement = KvPlacement::kAuto;
  auto dec = OpenDecoder("cpu", "models/apr-tiny", d);
  EXPECT_TRUE(dec.ok()) << dec.status();
}

// apr-tiny at 32 sequences x 4096 tokens: 25 MB of weights, 384 MiB of KV cache (32 x 6
// layers x 2 KV heads x 256 blocks x 4 KiB) and the predictor's state: resident on any
// GPU with room for that beside the reserve, host RAM on one without.
TEST(ResolveAutoPlacement, ResidentWhenTheCacheFitsElseHost) {
  auto model = LoadModelConfig("models/apr-tiny/config.json");
  ASSERT_TRUE(model.ok()) << model.status();
  DecoderOptions d;
  d.placement = KvPlacement::kAuto;
  d.max_sequences = 32;
  d.budget_tokens = 1024;
  const int64_t gib = int64_t{1} << 30;
  EXPECT_EQ(*ResolveAutoPlacement(*model, d, 80 * gib, true, "p"), KvPlacement::kDevice);
  const int64_t just_the_reserve = 2 * gib + 300 * (int64_t{1} << 20);
  EXPECT_EQ(*ResolveAutoPlacement(*model, d, just_the_reserve, true, "p"), KvPlacement::kHost);
  auto refused =
      ResolveAutoPlacement(*model, d, just_the_reserve, false, "m/predictor.safetensors");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("m/predictor.safetensors does not exist"),
            std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace apr::cluster
