#include "predictor/recorder.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "runtime/dtype.h"

namespace apr::predictor {
namespace {

constexpr char kMagic[8] = {'A', 'P', 'R', 'T', 'R', 'C', '0', '1'};
constexpr uint32_t kTrackMagic = 0x4b435254;  // "TRCK"

int64_t Width(int64_t tokens, int64_t block) { return (tokens + block - 1) / block; }

}  // namespace

uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return sign | (a > 0x7f800000u ? 0x7e00 : 0x7c00);  // NaN, Inf
  if (a >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to infinity
  if (a < 0x38800000u) {                        // below 2^-14: a half subnormal (or zero)
    float v;
    std::memcpy(&v, &a, sizeof v);
    return sign | static_cast<uint16_t>(std::nearbyint(v * 16777216.0f));  // units of 2^-24
  }
  const uint32_t mant = a & 0x7fffffu;
  uint32_t h = ((((a >> 23) - 127 + 15) << 10) | (mant >> 13));
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent
  return sign | static_cast<uint16_t>(h);
}

// ---------------------------------------------------------------------------------------
absl::StatusOr<std::unique_ptr<TraceWriter>> TraceWriter::Create(const std::string& path,
                                                                 const TraceHeader& header) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr)
    return absl::NotFoundError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  std::unique_ptr<TraceWriter> w(new TraceWriter(f, path, header));
  const uint32_t fields[4] = {header.block, header.history, header.num_layers, header.num_kv_heads};
  APR_RETURN_IF_ERROR(w->Put(kMagic, 8));
  APR_RETURN_IF_ERROR(w->Put(fields, sizeof fields));
  return w;
}

TraceWriter::~TraceWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

absl::Status TraceWriter::Put(const void* p, size_t n) {
  if (std::fwrite(p, 1, n, f_) != n)
    return absl::DataLossError(absl::StrCat("write to ", path_, " failed: ", std::strerror(errno)));
  bytes_ += n;
  return absl::OkStatus();
}

absl::Status TraceWriter::Write(const Track& t) {
  const int64_t b = h_.block;
  const bool inputs = !t.input_rows.empty(), mass = !t.mass_rows.empty();
  if ((inputs && t.input_rows.size() != t.target_rows.size()) ||
      (mass && t.mass_rows.size() != t.target_rows.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "track layer ", t.layer, " head ", t.kv_head, ": ", t.target_rows.size(),
        " target rows but ", t.input_rows.size(), " input and ", t.mass_rows.size(), " mass rows"));
  }
  // Check every width before writing anything, so that a rejected track leaves no trace.
  auto check = [&](const std::vector<float>& row, int64_t width) -> absl::Status {
    if (static_cast<int64_t>(row.size()) == width) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("track layer ", t.layer, " head ", t.kv_head,
                                                   ": a row has ", row.size(),
                                                   " values, expected ", width));
  };
  for (const auto& row : t.prefill_rows) APR_RETURN_IF_ERROR(check(row, Width(t.prompt_len, b)));
  for (size_t i = 0; i < t.target_rows.size(); ++i) {
    APR_RETURN_IF_ERROR(check(t.target_rows[i], Width(t.prompt_len + i + 1, b)));
    if (inputs) {
      APR_RETURN_IF_ERROR(check(t.input_rows[i], Width(t.prompt_len + i + 1, b)));
    }
    if (mass) {
      APR_RETURN_IF_ERROR(check(t.mass_rows[i], Width(t.prompt_len + i + 1, b)));
    }
  }
  const uint32_t fields[8] = {kTrackMagic,
                              t.sequence,
                              t.layer,
                              t.kv_head,
                              t.prompt_len,
                              static_cast<uint32_t>(t.prefill_rows.size()),
                              static_cast<uint32_t>(t.target_rows.size()),
                              (inputs ? 1u : 0u) | (mass ? 2u : 0u)};
  APR_RETURN_IF_ERROR(Put(fields, sizeof fields));
  auto put_row = [&](const std::vector<float>& row, int64_t width) -> absl::Status {
    buf_.resize(width);
    for (int64_t i = 0; i < width; ++i) buf_[i] = F32ToF16(row[i]);
    return Put(buf_.data(), sizeof(uint16_t) * width);
  };
  for (const auto& row : t.prefill_rows) APR_RETURN_IF_ERROR(put_row(row, Width(t.prompt_len, b)));
  for (size_t i = 0; i < t.target_rows.size(); ++i)
    APR_RETURN_IF_ERROR(put_row(t.target_rows[i], Width(t.prompt_len + i + 1, b)));
  for (size_t i = 0; i < t.input_rows.size(); ++i)
    APR_RETURN_IF_ERROR(put_row(t.input_rows[i], Width(t.prompt_len + i + 1, b)));
  for (size_t i = 0; i < t.mass_rows.size(); ++i)
    APR_RETURN_IF_ERROR(put_row(t.mass_rows[i], Width(t.prompt_len + i + 1, b)));
  return absl::OkStatus();
}

absl::Status TraceWriter::Close() {
  std::FILE* f = f_;
  f_ = nullptr;
  if (f != nullptr && std::fclose(f) != 0)
    return absl::DataLossError(absl::StrCat("closing ", path_, " failed: ", std::strerror(errno)));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Track>> ReadTraceFile(const std::string& path, TraceHeader* header) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr)
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, &std::fclose);
  auto bad = [&](std::string what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  char magic[8];
  uint32_t fields[4];
  if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, kMagic, 8) != 0)
    return bad("not a trace file (magic APRTRC01 expected)");
  if (std::fread(fields, sizeof fields, 1, f) != 1) return bad("truncated header");
  *header = TraceHeader{fields[0], fields[1], fields[2], fields[3]};
  if (header->block == 0) return bad("block is 0");
  std::vector<Track> tracks;
  std::vector<uint16_t> buf;
  for (;;) {
    uint32_t t[8];
    const size_t got = std::fread(t, sizeof(uint32_t), 8, f);
    if (got == 0 && std::feof(f)) break;
    if (got != 8) return bad(absl::StrCat("truncated track header after ", tracks.size(), " tracks"));
    if (t[0] != kTrackMagic) return bad(absl::StrCat("bad track magic after ", tracks.size(), " tracks"));
    Track tr;
    tr.sequence = t[1], tr.layer = t[2], tr.kv_head = t[3], tr.prompt_len = t[4];
    auto read_row = [&](int64_t width, std::vector<float>& row) -> bool {
      buf.resize(width);
      if (std::fread(buf.data(), sizeof(uint16_t), width, f) != static_cast<size_t>(width))
        return false;
      row.resize(width);
      for (int64_t i = 0; i < width; ++i) row[i] = F16ToF32(buf[i]);
      return true;
    };
    tr.prefill_rows.resize(t[5]);
    for (auto& row : tr.prefill_rows)
      if (!read_row(Width(tr.prompt_len, header->block), row)) return bad("truncated rows");
    tr.target_rows.resize(t[6]);
    for (size_t i = 0; i < tr.target_rows.size(); ++i)
      if (!read_row(Width(tr.prompt_len + i + 1, header->block), tr.target_rows[i]))
        return bad("truncated rows");
    if (t[7] & ~3u) return bad(absl::StrCat("unknown track flags ", t[7]));
    for (auto [bit, rows] : {std::pair{1u, &tr.input_rows}, std::pair{2u, &tr.mass_rows}}) {
      if (!(t[7] & bit)) continue;
      rows->resize(t[6]);
      for (size_t i = 0; i < rows->size(); ++i)
        if (!read_row(Width(tr.prompt_len + i + 1, header->block), (*rows)[i]))
          return bad("truncated rows");
    }
    tracks.push_back(std::move(tr));
  }
  return tracks;
}

// ---------------------------------------------------------------------------------------
TraceRecorder::TraceRecorder(const SelectionConfig& config, const ModelDims& dims,
                             AttentionPredictorPolicy* policy)
    : config_(config), dims_(dims), policy_(policy), tracks_(dims.num_layers * dims.num_kv_heads) {
  for (int64_t l = 0; l < dims.num_layers; ++l)
    for (int64_t g = 0; g < dims.num_kv_heads; ++g) {
      tracks_[l * dims.num_kv_heads + g].layer = l;
      tracks_[l * dims.num_kv_heads + g].kv_head = g;
    }
}

void TraceRecorder::ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows,
                                   int64_t num_heads, const float* probs) {
  if (policy_ != nullptr) policy_->ObservePrefill(layer, prompt_len, rows, num_heads, probs);
  const int64_t use = std::min(rows, config_.history), b = config_.block;
  row_.resize(Width(prompt_len, b));
  for (int64_t g = 0; g < dims_.num_kv_heads; ++g) {
    Track& t = tracks_[layer * dims_.num_kv_heads + g];
    t.prompt_len = prompt_len;
    t.prefill_rows.clear(), t.target_rows.clear(), t.input_rows.clear(), t.mass_rows.clear();
    for (int64_t r = rows - use; r < rows; ++r) {
      PoolGroupRow(probs + r * prompt_len, rows * prompt_len, g, dims_.group(), prompt_len, b,
                   row_.data());
      t.prefill_rows.push_back(row_);
    }
  }
}

void TraceRecorder::SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) {
  if (policy_ != nullptr) {
    policy_->SelectTokens(step, spans);
  } else {
    spans->clear();
  }
  FullAttentionProbs(step, &probs_);
  const int64_t len = step.context_len, b = config_.block, nb = Width(len, b);
  const int64_t group = dims_.group();
  row_.resize(nb);
  mass_.resize(nb);
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    PoolGroupRow(probs_.data(), len, g, group, len, b, row_.data());
    std::fill(mass_.begin(), mass_.end(), 0.0f);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const float* p = probs_.data() + h * len;
      for (int64_t t = 0; t < len; ++t) mass_[t / b] += p[t];
    }
    for (float& m : mass_) m /= static_cast<float>(group);
    Track& tr = tracks_[step.layer * dims_.num_kv_heads + g];
    tr.target_rows.push_back(row_);
    tr.mass_rows.push_back(mass_);
  }
}

void TraceRecorder::ObserveDecode(const DecodeStep& step, const float* probs) {
  if (policy_ == nullptr) return;
  policy_->ObserveDecode(step, probs);
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    const AttentionHistory& h = policy_->history(step.layer, g);
    const float* last = h.data() + (h.rows() - 1) * h.cols();
    tracks_[step.layer * dims_.num_kv_heads + g].input_rows.emplace_back(last, last + h.cols());
  }
}

std::vector<Track> TraceRecorder::TakeTracks(uint32_t sequence) {
  std::vector<Track> out;
  out.swap(tracks_);
  for (Track& t : out) t.sequence = sequence;
  tracks_.resize(dims_.num_layers * dims_.num_kv_heads);
  for (int64_t l = 0; l < dims_.num_layers; ++l)
    for (int64_t g = 0; g < dims_.num_kv_heads; ++g) {
      tracks_[l * dims_.num_kv_heads + g].layer = l;
      tracks_[l * dims_.num_kv_heads + g].kv_head = g;
    }
  return out;
}

}  // namespace apr::predictor
