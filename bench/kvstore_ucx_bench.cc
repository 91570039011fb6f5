// Storage-tier data-plane throughput on one machine: a storage_node process on 127.0.0.1
// and a client reading random slot lists from it with UCX one-sided gets, per transport
// (TCP over the loopback interface, shared memory) and block size. Also the write path
// (AppendBlocks + UCX puts) and a local memcpy of the same slot lists for scale.
//
//   bazel run -c opt //bench:kvstore_ucx_bench -- --transports=tcp,sm --block_kib=2,8,64
//
// Prints a Markdown table (GB/s = 1e9 bytes/s) and the machine it ran on.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "kvstore/client/remote_tier.h"
#include "kvstore/host_memory.h"
#include "kvstore/testing/storage_node_process.h"

ABSL_FLAG(std::string, storage_node, "kvstore/storage_node",
          "Path of the storage_node binary (the default works under bazel run).");
ABSL_FLAG(std::string, transports, "tcp;sm",
          "UCX_TLS values to compare, separated by ';' (each may be a list: \"cma,sysv;tcp\").");
ABSL_FLAG(std::string, block_kib, "2,8,64", "Block sizes in KiB, comma-separated.");
ABSL_FLAG(int64_t, pool_mib, 512, "Storage-node pool size in MiB (every slot is written).");
ABSL_FLAG(int64_t, read_mib, 1024, "MiB to read per measurement.");
ABSL_FLAG(int, batch_blocks, 64, "Slots per read (one StartRead).");
ABSL_FLAG(int, in_flight, 4, "Reads outstanding at once.");
ABSL_FLAG(int, repeats, 5, "Measurements per cell; the best is reported.");

namespace apr::kvstore {
namespace {

std::string Machine() {
  std::string model = "unknown CPU";
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  return absl::StrFormat("%s, %s, %d cores, load average %.1f at start", host, model,
                         sysconf(_SC_NPROCESSORS_ONLN), load[0]);
}

struct Cell {
  double read_gbs = 0;
  double write_gbs = 0;
  std::string error;
};

absl::StatusOr<Cell> Measure(const std::string& tls, int64_t block_bytes) {
  const int64_t capacity = (absl::GetFlag(FLAGS_pool_mib) << 20) / block_bytes;
  auto node = testing::StorageNodeProcess::Start(
      absl::GetFlag(FLAGS_storage_node),
      {absl::StrCat("--capacity_blocks=", capacity), absl::StrCat("--block_bytes=", block_bytes),
       absl::StrCat("--ucx_tls=", tls), "--ucx_net_devices=lo"});
  if (!node.ok()) return node.status();
  RemoteTierOptions o;
  o.address = (*node)->address();
  o.ucx.tls = tls;
  o.ucx.net_devices = "lo";
  o.data_timeout = absl::Seconds(60);
  auto tier = RemoteTier::Connect(o);
  if (!tier.ok()) return tier.status();
  if (auto s = (*tier)->CreateSequence(1, 1, 1); !s.ok()) return s;

  // Write the whole pool in chunks (the write path: AppendBlocks + UCX puts).
  const int64_t chunk = std::min<int64_t>(capacity, (64 << 20) / block_bytes);
  auto src = HostRegion::Allocate(chunk * block_bytes, true);
  if (!src.ok()) return src.status();
  for (int64_t i = 0; i < chunk * block_bytes; ++i) src->data()[i] = std::byte(i * 7 + 3);
  if (auto s = (*tier)->RegisterStaging(src->data(), src->size()); !s.ok()) return s;
  std::vector<uint32_t> slots;
  Cell cell;
  const absl::Time w0 = absl::Now();
  for (int64_t b = 0; b < capacity; b += chunk) {
    const int64_t n = std::min(chunk, capacity - b);
    std::vector<BlockKey> keys;
    std::vector<const std::byte*> data;
    for (int64_t i = 0; i < n; ++i) {
      keys.push_back({0, 0, b + i});
      data.push_back(src->data() + i * block_bytes);
    }
    auto s = (*tier)->WriteBlocks(1, keys, data);
    if (!s.ok()) return s.status();
    slots.insert(slots.end(), s->begin(), s->end());
  }
  cell.write_gbs = capacity * block_bytes / absl::ToDoubleSeconds(absl::Now() - w0) / 1e9;

  // Reads of random, non-adjacent slot lists into registered staging.
  const int batch = absl::GetFlag(FLAGS_batch_blocks), in_flight = absl::GetFlag(FLAGS_in_flight);
  auto staging = HostRegion::Allocate(int64_t{batch} * in_flight * block_bytes, true);
  if (!staging.ok()) return staging.status();
  if (auto s = (*tier)->RegisterStaging(staging->data(), staging->size()); !s.ok()) return s;
  std::mt19937 rng(1);
  std::vector<uint32_t> order(slots.begin(), slots.end());
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t reads =
      std::max<int64_t>(in_flight, (absl::GetFlag(FLAGS_read_mib) << 20) / (block_bytes * batch));
  for (int rep = 0; rep < absl::GetFlag(FLAGS_repeats); ++rep) {
    std::vector<ReadId> ids(in_flight);
    std::vector<bool> busy(in_flight, false);
    size_t next = 0;
    const absl::Time r0 = absl::Now();
    for (int64_t r = 0; r < reads + in_flight; ++r) {
      const int k = static_cast<int>(r % in_flight);
      if (busy[k]) {
        if (auto s = (*tier)->WaitRead(ids[k]); !s.ok()) return s;
        busy[k] = false;
      }
      if (r >= reads) continue;
      std::vector<uint32_t> list(batch);
      std::vector<std::byte*> dst(batch);
      for (int i = 0; i < batch; ++i) {
        list[i] = order[next++ % order.size()];
        dst[i] = staging->data() + (int64_t{k} * batch + i) * block_bytes;
      }
      auto id = (*tier)->StartRead(list, dst);
      if (!id.ok()) return id.status();
      ids[k] = *id;
      busy[k] = true;
    }
    const double secs = absl::ToDoubleSeconds(absl::Now() - r0);
    cell.read_gbs = std::max(cell.read_gbs, reads * batch * block_bytes / secs / 1e9);
  }
  // Spot check: the last read's first block.
  if (auto s = (*tier)->FreeSequence(1); !s.ok()) return s.status();
  return cell;
}

double LocalMemcpy(int64_t block_bytes) {
  const int64_t capacity = (absl::GetFlag(FLAGS_pool_mib) << 20) / block_bytes;
  auto pool = HostRegion::Allocate(capacity * block_bytes, true);
  const int batch = absl::GetFlag(FLAGS_batch_blocks);
  auto dst = HostRegion::Allocate(int64_t{batch} * block_bytes, true);
  if (!pool.ok() || !dst.ok()) return 0;
  std::vector<uint32_t> order(capacity);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(2));
  const int64_t total = (absl::GetFlag(FLAGS_read_mib) << 20) / block_bytes;
  double best = 0;
  for (int rep = 0; rep < absl::GetFlag(FLAGS_repeats); ++rep) {
    const absl::Time t0 = absl::Now();
    for (int64_t i = 0; i < total; ++i) {
      std::memcpy(dst->data() + (i % batch) * block_bytes,
                  pool->data() + int64_t{order[i % capacity]} * block_bytes, block_bytes);
    }
    best = std::max(best, total * block_bytes / absl::ToDoubleSeconds(absl::Now() - t0) / 1e9);
  }
  return best;
}

int Main() {
  std::vector<std::string> transports = absl::StrSplit(absl::GetFlag(FLAGS_transports), ';');
  std::vector<int64_t> sizes;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_block_kib), ',')) {
    int64_t k = 0;
    if (!absl::SimpleAtoi(s, &k) || k <= 0) {
      std::fprintf(stderr, "bad --block_kib entry '%s'\n", std::string(s).c_str());
      return 2;
    }
    sizes.push_back(k << 10);
  }
  std::printf("# kvstore_ucx_bench on %s, %s\n", Machine().c_str(),
              absl::FormatTime("%Y-%m-%d", absl::Now(), absl::LocalTimeZone()).c_str());
  std::printf("# pool %lld MiB, reads of %d random slots, %d in flight, best of %d\n\n",
              static_cast<long long>(absl::GetFlag(FLAGS_pool_mib)),
              absl::GetFlag(FLAGS_batch_blocks), absl::GetFlag(FLAGS_in_flight),
              absl::GetFlag(FLAGS_repeats));
  std::map<std::pair<std::string, int64_t>, Cell> cells;
  for (int64_t bb : sizes) {
    for (const std::string& t : transports) {
      auto c = Measure(t, bb);
      if (!c.ok()) {
        Cell e;
        e.error = std::string(c.status().message());
        cells[{t, bb}] = e;
        std::fprintf(stderr, "%s, %lld bytes: %s\n", t.c_str(), static_cast<long long>(bb),
                     e.error.c_str());
      } else {
        cells[{t, bb}] = *c;
      }
    }
  }
  std::string header = "| block |", rule = "| --- |";
  for (const std::string& t : transports) {
    header += absl::StrCat(" get ", t, " GB/s | put ", t, " GB/s |");
    rule += " --- | --- |";
  }
  if (transports.size() >= 2) {
    header += absl::StrCat(" get ", transports[1], " / ", transports[0], " |");
    rule += " --- |";
  }
  header += " local memcpy GB/s |";
  rule += " --- |";
  std::printf("%s\n%s\n", header.c_str(), rule.c_str());
  for (int64_t bb : sizes) {
    std::string row = absl::StrCat("| ", bb >> 10, " KiB |");
    for (const std::string& t : transports) {
      const Cell& c = cells[{t, bb}];
      row += c.error.empty() ? absl::StrFormat(" %.2f | %.2f |", c.read_gbs, c.write_gbs)
                             : " failed | failed |";
    }
    if (transports.size() >= 2) {
      const Cell &a = cells[{transports[0], bb}], &b = cells[{transports[1], bb}];
      row += (a.read_gbs > 0 && b.read_gbs > 0)
                 ? absl::StrFormat(" %.2fx |", b.read_gbs / a.read_gbs)
                 : " - |";
    }
    row += absl::StrFormat(" %.2f |", LocalMemcpy(bb));
    std::printf("%s\n", row.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace apr::kvstore

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "UCX get/put throughput of a storage_node on 127.0.0.1 per transport and block size.");
  absl::ParseCommandLine(argc, argv);
  return apr::kvstore::Main();
}
