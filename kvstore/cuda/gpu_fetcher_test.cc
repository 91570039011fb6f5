// On the GPU machine (tag "gpu"): the gather kernel and GpuBlockFetcher move exactly the
// bytes asked for, local (mapped pinned pool) and remote (a storage node process over UCX;
// APR_STORAGE_NODE names the binary outside Bazel), fetch and write-back.
#include "kvstore/cuda/gpu_fetcher.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kvstore/block_store.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/cuda/gather_blocks.h"
#include "kvstore/cuda/host_register.h"
#include "kvstore/testing/storage_node_process.h"

namespace apr::kvstore {
namespace {

constexpr int64_t kBlock = 8192;
constexpr int64_t kPoolBlocks = 4096;
constexpr int64_t kGpuBlocks = 1024;

#define CUDA_ASSERT(x) ASSERT_EQ((x), cudaSuccess) << #x

std::byte PatternByte(int64_t slot, int64_t i) {
  return std::byte(static_cast<uint8_t>(slot * 131 + i * 7 + (i >> 8)));
}

class GpuFetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) GTEST_SKIP() << "no GPU";
    auto store = BlockStore::Create({.block_bytes = kBlock, .capacity_blocks = kPoolBlocks});
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    for (int64_t s = 0; s < kPoolBlocks; ++s)
      for (int64_t i = 0; i < kBlock; ++i) store_->slot_data(s)[i] = PatternByte(s, i);
    CUDA_ASSERT(cudaMalloc(&gpu_, kGpuBlocks * kBlock));
    CUDA_ASSERT(cudaMemset(gpu_, 0, kGpuBlocks * kBlock));
    CUDA_ASSERT(cudaStreamCreate(&copy_));
    CUDA_ASSERT(cudaStreamCreate(&compute_));
  }
  void TearDown() override {
    if (gpu_ != nullptr) cudaFree(gpu_);
    if (copy_ != nullptr) cudaStreamDestroy(copy_);
    if (compute_ != nullptr) cudaStreamDestroy(compute_);
  }
  // GPU slot g must hold pool slot s's pattern.
  void ExpectGpuSlot(uint32_t g, uint32_t s) {
    std::vector<std::byte> back(kBlock);
    ASSERT_EQ(cudaMemcpy(back.data(), static_cast<std::byte*>(gpu_) + g * kBlock, kBlock,
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    for (int64_t i = 0; i < kBlock; ++i) {
      ASSERT_EQ(back[i], PatternByte(s, i))
          << "GPU slot " << g << " pool slot " << s << " byte " << i;
    }
  }
  void RandomLists(int n, std::vector<uint32_t>* src, std::vector<uint32_t>* dst) {
    std::mt19937 rng(n);
    std::vector<uint32_t> perm(kGpuBlocks);
    for (uint32_t i = 0; i < kGpuBlocks; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int i = 0; i < n; ++i) {
      src->push_back(rng() % kPoolBlocks);
      dst->push_back(perm[i]);
    }
  }

  std::unique_ptr<BlockStore> store_;
  void* gpu_ = nullptr;
  cudaStream_t copy_ = nullptr, compute_ = nullptr;
};

TEST_F(GpuFetcherTest, GatherKernelAllSizes) {
  auto mapped = MappedHostMemory::Register(store_->base(), store_->region_bytes());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  for (int64_t bb : {2048, 8192, 65536}) {
    const int n = 40;
    std::vector<uint32_t> idx(2 * n);
    std::mt19937 rng(bb);
    const int64_t src_blocks = store_->region_bytes() / bb, dst_blocks = kGpuBlocks * kBlock / bb;
    for (int i = 0; i < n; ++i) {
      idx[i] = rng() % src_blocks;
      idx[n + i] = (i * 7) % dst_blocks;
    }
    uint32_t* didx = nullptr;
    CUDA_ASSERT(cudaMalloc(reinterpret_cast<void**>(&didx), idx.size() * 4));
    CUDA_ASSERT(cudaMemcpy(didx, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
    CUDA_ASSERT(
        LaunchGatherBlocks((*mapped)->device_pointer(), didx, gpu_, didx + n, n, bb, copy_));
    CUDA_ASSERT(cudaStreamSynchronize(copy_));
    std::vector<std::byte> back(bb);
    for (int i = 0; i < n; ++i) {
      CUDA_ASSERT(cudaMemcpy(back.data(), static_cast<std::byte*>(gpu_) + idx[n + i] * bb, bb,
                             cudaMemcpyDeviceToHost));
      ASSERT_EQ(std::memcmp(back.data(), store_->base() + idx[i] * bb, bb), 0)
          << bb << "-byte block " << i;
    }
    cudaFree(didx);
  }
}

// The counted gather reads its count on the device: only the first *n entries move
// (not max_n), kNoSlot sources are skipped (their destination keeps its bytes), and a
// small grid strides over the list.
TEST_F(GpuFetcherTest, CountedGatherMovesTheDeviceCount) {
  auto mapped = MappedHostMemory::Register(store_->base(), store_->region_bytes());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  const int max_n = 300, n = 211;
  std::vector<uint32_t> src, dst;
  RandomLists(max_n, &src, &dst);
  for (int i = 0; i < n; i += 17) src[i] = kNoSlot;
  std::vector<uint32_t> idx(src);
  idx.insert(idx.end(), dst.begin(), dst.end());
  uint32_t* didx = nullptr;
  int32_t* dn = nullptr;
  CUDA_ASSERT(cudaMalloc(reinterpret_cast<void**>(&didx), idx.size() * 4));
  CUDA_ASSERT(cudaMalloc(reinterpret_cast<void**>(&dn), 4));
  CUDA_ASSERT(cudaMemcpy(didx, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
  CUDA_ASSERT(cudaMemcpy(dn, &n, 4, cudaMemcpyHostToDevice));
  for (int grid : {0, 7, 1}) {
    CUDA_ASSERT(cudaMemset(gpu_, 0xa5, kGpuBlocks * kBlock));
    CUDA_ASSERT(LaunchGatherBlocksCounted((*mapped)->device_pointer(), didx, gpu_, didx + max_n, dn,
                                          max_n, kBlock, grid, copy_));
    CUDA_ASSERT(cudaStreamSynchronize(copy_));
    std::vector<std::byte> back(kBlock);
    for (int i = 0; i < max_n; ++i) {
      CUDA_ASSERT(cudaMemcpy(back.data(), static_cast<std::byte*>(gpu_) + dst[i] * kBlock, kBlock,
                             cudaMemcpyDeviceToHost));
      if (i < n && src[i] != kNoSlot) {
        ASSERT_EQ(std::memcmp(back.data(), store_->slot_data(src[i]), kBlock), 0)
            << "grid " << grid << " entry " << i;
      } else {
        for (int64_t j = 0; j < kBlock; ++j)
          ASSERT_EQ(back[j], std::byte{0xa5}) << "grid " << grid << " entry " << i << " moved";
      }
    }
  }
  cudaFree(didx);
  cudaFree(dn);
}

TEST_F(GpuFetcherTest, LocalFetchAndWriteBack) {
  auto mapped = MappedHostMemory::Register(store_->base(), store_->region_bytes());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  auto f = GpuBlockFetcher::Local(store_.get(), (*mapped)->device_pointer(), gpu_, 512, copy_);
  ASSERT_TRUE(f.ok()) << f.status();
  for (int n : {1, 57, 512}) {
    std::vector<uint32_t> src, dst;
    RandomLists(n, &src, &dst);
    auto job = (*f)->Start(src, dst);
    ASSERT_TRUE(job.ok()) << job.status();
    ASSERT_TRUE((*f)->StreamWait(*job, compute_).ok());
    CUDA_ASSERT(cudaStreamSynchronize(compute_));
    for (int i = 0; i < n; ++i) ExpectGpuSlot(dst[i], src[i]);
  }
  // Write-back: GPU slots 0..9 (holding pool slots' patterns) become blocks of a sequence.
  ASSERT_TRUE(store_->CreateSequence(3, 1, 1).ok());
  std::vector<BlockKey> keys;
  std::vector<uint32_t> gslots;
  for (int64_t b = 0; b < 10; ++b) {
    keys.push_back({0, 0, b});
    gslots.push_back(static_cast<uint32_t>(b));
  }
  std::vector<std::byte> expect(10 * kBlock);
  CUDA_ASSERT(cudaMemcpy(expect.data(), gpu_, 10 * kBlock, cudaMemcpyDeviceToHost));
  auto wb = (*f)->WriteBack(3, keys, gslots);
  ASSERT_TRUE(wb.ok()) << wb.status();
  ASSERT_TRUE((*f)->Wait(*wb).ok());
  const auto& slots = GpuBlockFetcher::tier_slots(**wb);
  ASSERT_EQ(slots.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(std::memcmp(store_->slot_data(slots[i]), expect.data() + i * kBlock, kBlock), 0);
  }
}

TEST_F(GpuFetcherTest, RemoteFetchAndWriteBackOverUcx) {
  for (const char* tls : {"sm", "tcp"}) {
    auto node = testing::StorageNodeProcess::Start(
        testing::StorageNodeBinary(),
        {absl::StrCat("--capacity_blocks=", kPoolBlocks), absl::StrCat("--block_bytes=", kBlock),
         absl::StrCat("--ucx_tls=", tls), "--ucx_net_devices=lo"});
    ASSERT_TRUE(node.ok()) << node.status();
    RemoteTierOptions o;
    o.address = (*node)->address();
    o.ucx.tls = tls;
    o.ucx.net_devices = "lo";
    auto tier = RemoteTier::Connect(o);
    ASSERT_TRUE(tier.ok()) << tier.status();
    // Fill the node: sequence 1, blocks 0..kPoolBlocks/2 with the pool's patterns.
    ASSERT_TRUE((*tier)->CreateSequence(1, 1, 1).ok());
    std::vector<BlockKey> keys;
    std::vector<const std::byte*> data;
    for (int64_t b = 0; b < kPoolBlocks / 2; ++b) {
      keys.push_back({0, 0, b});
      data.push_back(store_->slot_data(b));
    }
    auto node_slots = (*tier)->WriteBlocks(1, keys, data);
    ASSERT_TRUE(node_slots.ok()) << node_slots.status();
    auto f = GpuBlockFetcher::Remote(tier->get(), gpu_, 600, 64, 3, copy_);
    ASSERT_TRUE(f.ok()) << f.status();
    for (int n : {1, 63, 64, 65, 600}) {
      std::vector<uint32_t> logical, dst;
      RandomLists(n, &logical, &dst);
      std::vector<uint32_t> src;
      for (uint32_t& b : logical) {
        b %= kPoolBlocks / 2;
        src.push_back((*node_slots)[b]);
      }
      auto job = (*f)->Start(src, dst);
      ASSERT_TRUE(job.ok()) << job.status();
      ASSERT_TRUE((*f)->StreamWait(*job, compute_).ok());
      CUDA_ASSERT(cudaStreamSynchronize(compute_));
      for (int i = 0; i < n; ++i) ExpectGpuSlot(dst[i], logical[i]);
    }
    // Write-back over UCX: GPU slots 0..99 become blocks of sequence 2.
    ASSERT_TRUE((*tier)->CreateSequence(2, 1, 1).ok());
    std::vector<BlockKey> wkeys;
    std::vector<uint32_t> gslots;
    for (int64_t b = 0; b < 100; ++b) {
      wkeys.push_back({0, 0, b});
      gslots.push_back(static_cast<uint32_t>(b));
    }
    std::vector<std::byte> expect(100 * kBlock), back(100 * kBlock);
    CUDA_ASSERT(cudaMemcpy(expect.data(), gpu_, 100 * kBlock, cudaMemcpyDeviceToHost));
    auto wb = (*f)->WriteBack(2, wkeys, gslots);
    ASSERT_TRUE(wb.ok()) << wb.status();
    ASSERT_TRUE((*f)->Wait(*wb).ok());
    std::vector<std::byte*> dsts;
    for (int i = 0; i < 100; ++i) dsts.push_back(back.data() + i * kBlock);
    ASSERT_TRUE((*tier)->Read(GpuBlockFetcher::tier_slots(**wb), dsts).ok());
    EXPECT_EQ(back, expect) << tls;
    f->reset();
  }
}

}  // namespace
}  // namespace apr::kvstore
