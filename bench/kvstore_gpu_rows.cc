// The results table of kvstore_gpu_bench.
#include "bench/kvstore_gpu_rows.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace apr::bench {
namespace {

// The successful local row of (ctx, batch, mode), if any: what the ratios compare with.
const Row* FindLocalRow(const std::vector<Row>& rows, int64_t ctx, int batch, char mode) {
  for (const Row& r : rows) {
    if (r.c.ctx == ctx && r.c.batch == batch && r.c.mode == mode && !r.c.remote &&
        r.error.empty()) {
      return &r;
    }
  }
  return nullptr;
}

}  // namespace

void PrintRows(const std::vector<Row>& rows, const std::string& remote_tls) {
  std::printf(
      "| context | batch | mode | churn | ms/step | tokens/s | (a) / this | this / (c) | "
      "fetched MiB/step | fetch stalls (layers/step, ms/step) | note |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Row& row : rows) {
    const Config& c = row.c;
    const std::string mode = absl::StrCat(
        c.remote ? "(b) remote " + remote_tls : absl::StrCat("(", std::string(1, c.mode), ")"));
    if (!row.error.empty()) {
      std::printf("| %lld | %d | %s | %.2f | error | | | | | | %s |\n",
                  static_cast<long long>(c.ctx), c.batch, mode.c_str(), c.churn, row.error.c_str());
      continue;
    }
    const Row* a = FindLocalRow(rows, c.ctx, c.batch, 'a');
    const Row* cc = FindLocalRow(rows, c.ctx, c.batch, 'c');
    const Result& r = row.r;
    std::printf(
        "| %lld | %d | %s | %s | %.2f | %.0f | %s | %s | %.1f | %s | %s |\n",
        static_cast<long long>(c.ctx), c.batch, mode.c_str(),
        c.mode == 'b' ? absl::StrFormat("%.2f", c.churn).c_str() : "-", r.ms_per_step,
        c.batch * 1e3 / r.ms_per_step,
        a ? absl::StrFormat("%.1fx", a->r.ms_per_step / r.ms_per_step).c_str() : "-",
        cc ? absl::StrFormat("%.2fx", r.ms_per_step / cc->r.ms_per_step).c_str() : "-",
        r.fetched_mib_per_step,
        c.mode == 'b'
            ? absl::StrFormat("%.1f, %.3f", r.stalled_layers_per_step, r.stall_ms_per_step).c_str()
            : "-",
        r.note.c_str());
  }
}

}  // namespace apr::bench
