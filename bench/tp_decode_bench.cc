// Tensor-parallel decode throughput: the CudaDecoder's decode step at Llama-3.1-8B
// geometry (random bf16 weights, KV resident), one process per GPU, TP ranks joined by
// NCCL exactly as the worker joins them (CudaDecoderOptions::tp). Run once with
// --tp_size=1 and once per rank with --tp_size=N (tools/device/tp_run.sh); rank 0 prints
// one ROW line per (context, batch, attention) and the all-reduce timings alone.
//
//   tp_decode_bench --tp_size=2 --tp_rank=0 --nccl_id_file=/tmp/id &
//   tp_decode_bench --tp_size=2 --tp_rank=1 --nccl_id_file=/tmp/id
//
// Measures the decoder directly (no gRPC): DecodeStepAsync + Synchronize per step, the
// logits copied to the host as DecodeBatch does, the sampling left out. tokens/s =
// batch / median wall time of a step; step = median device time (CUDA events).
#include <cuda_runtime.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "backends/cuda/block_rules.h"
#include "backends/cuda/cuda_decoder.h"
#include "backends/cuda/cuda_decoder_bench_peer.h"
#include "backends/cuda/device_buffer.h"
#include "backends/cuda/predictor/predictor_weights.h"
#include "backends/cuda/tensor_parallel.h"
#include "bench/bench_util.h"

ABSL_FLAG(int, tp_size, 1, "tensor-parallel ranks (one process each)");
ABSL_FLAG(int, tp_rank, 0, "this process's rank");
ABSL_FLAG(int, device, -1, "CUDA device; -1: the rank");
ABSL_FLAG(std::string, nccl_id_file, "/tmp/tp_decode_bench.ncclid",
          "rank 0 writes the NCCL unique id here, the other ranks read it (remove it first)");
ABSL_FLAG(std::string, contexts, "4096,16384", "context lengths (tokens)");
ABSL_FLAG(std::string, batches, "8,16,32", "decode batch sizes");
ABSL_FLAG(std::string, modes, "dense,sparse", "attention: dense and/or sparse (budget below)");
ABSL_FLAG(int, budget, 1024, "sparse budget (tokens per KV head)");
ABSL_FLAG(int, steps, 30, "timed decode steps per row");
ABSL_FLAG(int, warmup, 5, "untimed steps before each row (graph capture included)");
ABSL_FLAG(int, layers, 32, "layers of the model (32: Llama-3.1-8B)");

namespace apr::cuda {
namespace {

using bench::Llama31_8B;
using bench::Median;
using bench::PositiveInts;

int Rank() { return absl::GetFlag(FLAGS_tp_rank); }

// Rank 0 creates the id and publishes it (temporary file, then rename); the others wait
// for the file.
std::string ExchangeNcclId(int rank) {
  const std::string path = absl::GetFlag(FLAGS_nccl_id_file);
  if (rank == 0) {
    absl::StatusOr<std::string> id = CreateNcclUniqueId();
    BENCH_CHECK_OK(id.status());
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary);
      out << *id;
    }
    std::filesystem::rename(tmp, path);
    return *id;
  }
  for (int i = 0; i < 1200; ++i) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      if (ss.str().size() == kNcclUniqueIdBytes) return ss.str();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::fprintf(stderr, "rank %d: no NCCL id in %s after 60 s\n", rank, path.c_str());
  std::exit(1);
}

// 2 x layers all-reduces of batch x hidden floats (one decode step's worth) captured in
// one graph and replayed: microseconds per all-reduce.
double AllReduceMicros(CudaDecoder& d, int batch, int layers) {
  TensorParallel* tp = d.tensor_parallel();
  const int64_t n = int64_t{batch} * d.config().hidden_size;
  auto buf = DeviceBuffer<float>::Allocate(n);
  BENCH_CHECK_OK(buf.status());
  BENCH_CHECK_CUDA(cudaMemset(buf->get(), 0, n * sizeof(float)));
  cudaStream_t s = d.stream();
  cudaGraph_t g;
  cudaGraphExec_t exec;
  BENCH_CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < 2 * layers; ++i) BENCH_CHECK_OK(tp->AllReduceSum(buf->get(), n, s));
  BENCH_CHECK_CUDA(cudaStreamEndCapture(s, &g));
  BENCH_CHECK_CUDA(cudaGraphInstantiate(&exec, g, 0));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> t;
  for (int i = 0; i < 23; ++i) {
    BENCH_CHECK_CUDA(cudaEventRecord(e0, s));
    BENCH_CHECK_CUDA(cudaGraphLaunch(exec, s));
    BENCH_CHECK_CUDA(cudaEventRecord(e1, s));
    BENCH_CHECK_CUDA(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    if (i >= 3) t.push_back(ms * 1e3 / (2 * layers));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  return Median(t);
}

// --modes: which attention the rows measure.
struct Attention {
  bool dense = false, sparse = false;
};

Attention WantedAttention() {
  Attention want;
  for (absl::string_view m : absl::StrSplit(absl::GetFlag(FLAGS_modes), ',', absl::SkipEmpty())) {
    want.dense |= m == "dense";
    want.sparse |= m == "sparse";
  }
  return want;
}

// The decoder of every row: room for the largest batch and context, dense to begin with
// (each row sets its attention), this process's TP rank (the NCCL id is added by Main).
CudaDecoderOptions DecoderOptions(int device, int max_batch, int max_ctx, int rank, int size) {
  CudaDecoderOptions o;
  o.device = device;
  o.max_sequences = max_batch;
  o.max_context = max_ctx;
  o.max_budget_tokens = absl::GetFlag(FLAGS_budget);
  o.sparse.enabled = false;
  o.sparse.budget_tokens = absl::GetFlag(FLAGS_budget);
  o.sparse.calibration_step = 0;
  o.predictor_weights = RandomPredictorWeights(7);  // the same on every rank
  o.tp.rank = rank;
  o.tp.size = size;
  return o;
}

// The ALLREDUCE lines: one per batch size (every rank takes part, rank 0 prints).
void PrintAllReduces(CudaDecoder& d, const std::vector<int>& batches, const ModelConfig& config,
                     int size, int rank) {
  for (int b : batches) {
    const double us = AllReduceMicros(d, b, config.num_hidden_layers);
    if (rank == 0) {
      std::printf("ALLREDUCE tp=%d batch=%d bytes=%lld us_per_allreduce=%.2f per_step_ms=%.3f\n",
                  size, b, static_cast<long long>(int64_t{b} * config.hidden_size * 4), us,
                  us * 2 * config.num_hidden_layers / 1e3);
    }
  }
}

// What every ROW shares: the TP geometry, the step counts and the events around a step.
struct RowSetup {
  int size = 1, rank = 0;
  int warmup = 0, steps = 0;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
};

// One ROW: `batch` random contexts of `ctx` tokens, `warmup` + `steps` decode steps, the
// medians of the timed ones (rank 0 prints).
void RunRow(CudaDecoder& d, const RowSetup& rs, int ctx, int batch, bool sparse) {
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<Sequence*> ptrs;
  for (int b = 0; b < batch; ++b) {
    seqs.push_back(d.NewSequence());
    BENCH_CHECK_OK(CudaDecoderBenchPeer::FillRandomContext(d, *seqs.back(), ctx, 100 + b));
    ptrs.push_back(seqs.back().get());
  }
  std::vector<int32_t> tokens(batch);
  std::vector<double> dev_ms, wall_ms;
  for (int s = 0; s < rs.warmup + rs.steps; ++s) {
    for (int b = 0; b < batch; ++b) tokens[b] = (7919 * (s + 1) + 31 * b) % 128000;
    const auto w0 = std::chrono::steady_clock::now();
    BENCH_CHECK_OK(d.DecodeStepAsync(ptrs, tokens, rs.e0, rs.e1));
    BENCH_CHECK_OK(d.Synchronize());
    const double wall =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
    float ms = 0;
    BENCH_CHECK_CUDA(cudaEventElapsedTime(&ms, rs.e0, rs.e1));
    if (s >= rs.warmup) {
      dev_ms.push_back(ms);
      wall_ms.push_back(wall);
    }
  }
  const double step = Median(dev_ms), wall = Median(wall_ms);
  if (rs.rank == 0) {
    std::printf(
        "ROW tp=%d context=%d batch=%d attention=%s step_ms=%.3f wall_ms=%.3f "
        "tokens_per_s=%.1f\n",
        rs.size, ctx, batch, sparse ? "sparse" : "dense", step, wall, batch * 1e3 / wall);
    std::fflush(stdout);
  }
}

// The ROWs: per context, dense then sparse (those wanted), per batch.
void RunRows(CudaDecoder& d, const RowSetup& rs, const std::vector<int>& contexts,
             const std::vector<int>& batches, const Attention& want) {
  for (int ctx : contexts) {
    for (int mode = 0; mode < 2; ++mode) {
      const bool sparse = mode == 1;
      if ((sparse && !want.sparse) || (!sparse && !want.dense)) continue;
      SparseOptions so = d.sparse();
      so.enabled = sparse;
      BENCH_CHECK_OK(d.SetSparse(so));
      for (int batch : batches) RunRow(d, rs, ctx, batch, sparse);
    }
  }
}

int Main() {
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  setenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", 0);
  setenv("NVSHMEM_DISABLE_NVLS", "1", 0);
  const int size = absl::GetFlag(FLAGS_tp_size), rank = Rank();
  const int device = absl::GetFlag(FLAGS_device) >= 0 ? absl::GetFlag(FLAGS_device) : rank;
  const std::vector<int> contexts = PositiveInts("contexts", absl::GetFlag(FLAGS_contexts));
  const std::vector<int> batches = PositiveInts("batches", absl::GetFlag(FLAGS_batches));
  const int steps = absl::GetFlag(FLAGS_steps), warmup = absl::GetFlag(FLAGS_warmup);
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int max_ctx = *std::max_element(contexts.begin(), contexts.end()) + steps + warmup + 16;
  const Attention want = WantedAttention();
  BENCH_CHECK_CUDA(cudaSetDevice(device));
  CudaDecoderOptions o = DecoderOptions(device, max_batch, max_ctx, rank, size);
  const auto t0 = std::chrono::steady_clock::now();
  if (size > 1) o.tp.nccl_unique_id = ExchangeNcclId(rank);
  const ModelConfig config = Llama31_8B(max_ctx, absl::GetFlag(FLAGS_layers));
  auto w = CudaWeights::Random(config, 1, rank, size);
  BENCH_CHECK_OK(w.status());
  auto dec = CudaDecoder::Create(std::shared_ptr<const CudaWeights>(std::move(*w)), o);
  BENCH_CHECK_OK(dec.status());
  CudaDecoder& d = **dec;
  BENCH_CHECK_OK(CudaDecoderBenchPeer::FillPoolRandom(d, 11));
  const double init_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  cudaDeviceProp prop;
  BENCH_CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
  if (rank == 0) {
    std::printf("INFO tp=%d device=%s weights_per_rank_GB=%.2f init_s=%.1f\n", size, prop.name,
                d.weights().TotalBytes() / 1e9, init_s);
  }
  if (size > 1) PrintAllReduces(d, batches, config, size, rank);
  RowSetup rs;
  rs.size = size;
  rs.rank = rank;
  rs.warmup = warmup;
  rs.steps = steps;
  BENCH_CHECK_CUDA(cudaEventCreate(&rs.e0));
  BENCH_CHECK_CUDA(cudaEventCreate(&rs.e1));
  RunRows(d, rs, contexts, batches, want);
  cudaEventDestroy(rs.e0);
  cudaEventDestroy(rs.e1);
  return 0;
}

}  // namespace
}  // namespace apr::cuda

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return apr::cuda::Main();
}
