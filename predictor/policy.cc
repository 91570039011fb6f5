#include "predictor/policy.h"

#include <cblas.h>

#include <algorithm>
#include <cassert>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace apr::predictor {

ModelDims DimsOf(const ModelConfig& c) {
  return ModelDims{c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim};
}

void FullAttentionProbs(const DecodeStep& step, std::vector<float>* probs) {
  const int64_t len = step.context_len, hd = step.head_dim;
  const int64_t group = step.num_heads / step.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  probs->resize(step.num_heads * len);
  for (int64_t h = 0; h < step.num_heads; ++h) {
    const float* q = step.queries + h * hd;
    const float* keys = step.keys.keys(h / group);
    float* p = probs->data() + h * len;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, len, hd, scale, keys, hd, q, 1, 0.0f, p, 1);
    const float mx = *std::max_element(p, p + len);
    float sum = 0.0f;
    for (int64_t t = 0; t < len; ++t) sum += (p[t] = std::exp(p[t] - mx));
    const float inv = 1.0f / sum;
    for (int64_t t = 0; t < len; ++t) p[t] *= inv;
  }
}

// ---------------------------------------------------------------------------------------
SelectionPolicy::SelectionPolicy(std::string name, const SelectionConfig& config,
                                 const ModelDims& dims)
    : name_(std::move(name)),
      config_(config),
      dims_(dims),
      last_spans_(dims.num_layers, std::vector<TokenSpans>(dims.num_kv_heads)) {}

void SelectionPolicy::SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) {
  if (step.layer < config_.dense_layers) {
    spans->clear();
    last_spans_[step.layer].assign(step.num_kv_heads, TokenSpans{{0, step.context_len}});
    return;
  }
  const StepLayout layout = MakeStepLayout(config_, step.context_len);
  const int64_t nkv = step.num_kv_heads, ncand = layout.num_candidates();
  spans->assign(nkv, {});
  std::vector<int64_t> chosen;
  if (layout.num_select < ncand) {
    scores_.resize(nkv);
    for (auto& s : scores_) s.assign(ncand, 0.0f);
    ScoreCandidates(step, layout, scores_);
  }
  for (int64_t g = 0; g < nkv; ++g) {
    if (layout.num_select < ncand) {
      chosen = TopK(scores_[g], layout.num_select);
      for (int64_t& b : chosen) b += layout.cand_begin;
    } else {
      chosen.clear();
      for (int64_t b = layout.cand_begin; b < layout.cand_end; ++b) chosen.push_back(b);
    }
    (*spans)[g] = SpansFor(config_, step.context_len, chosen);
  }
  last_spans_[step.layer] = *spans;
}

void FullAttentionPolicy::SelectTokens(const DecodeStep& step, std::vector<TokenSpans>* spans) {
  spans->clear();
  last_spans_[step.layer].assign(step.num_kv_heads, TokenSpans{{0, step.context_len}});
}

// ---------------------------------------------------------------------------------------
void StreamingPolicy::ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                                      std::vector<std::vector<float>>& scores) {
  for (auto& s : scores)
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<float>(i);
}

// ---------------------------------------------------------------------------------------
H2OPolicy::H2OPolicy(const SelectionConfig& config, const ModelDims& dims, int64_t prefill_rows)
    : SelectionPolicy("h2o", config, dims),
      prefill_rows_(prefill_rows),
      acc_(dims.num_layers, std::vector<std::vector<double>>(dims.num_kv_heads)) {}

void H2OPolicy::Accumulate(int64_t layer, const float* probs, int64_t len, int64_t stride) {
  const int64_t b = config_.block, nb = CeilDiv(len, b), group = dims_.group();
  sums_.resize(nb);
  for (int64_t g = 0; g < dims_.num_kv_heads; ++g) {
    std::vector<double>& acc = acc_[layer][g];
    if (static_cast<int64_t>(acc.size()) < nb) acc.resize(nb, 0.0);
    std::fill(sums_.begin(), sums_.end(), 0.0f);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const float* p = probs + h * stride;
      for (int64_t i = 0; i < nb; ++i) {
        float s = 0.0f;
        for (int64_t t = i * b; t < std::min(len, (i + 1) * b); ++t) s += p[t];
        sums_[i] = std::max(sums_[i], s);
      }
    }
    for (int64_t i = 0; i < nb; ++i) acc[i] += sums_[i];
  }
}

void H2OPolicy::ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows, int64_t num_heads,
                               const float* probs) {
  for (auto& a : acc_[layer]) a.clear();
  for (int64_t r = 0; r < rows; ++r)
    Accumulate(layer, probs + r * prompt_len, prompt_len, rows * prompt_len);
}

void H2OPolicy::ObserveDecode(const DecodeStep& step, const float* probs) {
  Accumulate(step.layer, probs, step.context_len, step.context_len);
}

void H2OPolicy::ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                                std::vector<std::vector<float>>& scores) {
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    const std::vector<double>& acc = acc_[step.layer][g];
    for (int64_t i = 0; i < layout.num_candidates(); ++i) {
      const int64_t b = layout.cand_begin + i;
      scores[g][i] = b < static_cast<int64_t>(acc.size()) ? static_cast<float>(acc[b]) : 0.0f;
    }
  }
}

// ---------------------------------------------------------------------------------------
SnapKVPolicy::SnapKVPolicy(const SelectionConfig& config, const ModelDims& dims, int64_t window,
                           int64_t kernel)
    : SelectionPolicy("snapkv", config, dims),
      window_(window),
      kernel_(kernel),
      block_scores_(dims.num_layers, std::vector<std::vector<float>>(dims.num_kv_heads)) {}

void SnapKVPolicy::ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows,
                                  int64_t num_heads, const float* probs) {
  const int64_t prefix = prompt_len - rows, b = config_.block, group = dims_.group();
  const int64_t nb = CeilDiv(std::max<int64_t>(prefix, 0), b), half = kernel_ / 2;
  std::vector<float> vote(std::max<int64_t>(prefix, 0)), pooled(vote.size()), blocks(nb);
  for (int64_t g = 0; g < dims_.num_kv_heads; ++g) {
    std::vector<float>& out = block_scores_[layer][g];
    out.assign(nb, 0.0f);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      std::fill(vote.begin(), vote.end(), 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        const float* p = probs + (h * rows + r) * prompt_len;
        for (int64_t t = 0; t < prefix; ++t) vote[t] += p[t];
      }
      for (int64_t t = 0; t < prefix; ++t) {
        float s = 0.0f;
        for (int64_t d = -half; d <= half; ++d) {
          if (t + d >= 0 && t + d < prefix) s += vote[t + d];
        }
        pooled[t] = s / static_cast<float>(kernel_);
      }
      for (int64_t i = 0; i < nb; ++i) {
        float s = 0.0f;
        for (int64_t t = i * b; t < std::min(prefix, (i + 1) * b); ++t) s += pooled[t];
        out[i] = std::max(out[i], s);
      }
    }
  }
}

void SnapKVPolicy::ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                                   std::vector<std::vector<float>>& scores) {
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    const std::vector<float>& s = block_scores_[step.layer][g];
    for (int64_t i = 0; i < layout.num_candidates(); ++i) {
      const int64_t b = layout.cand_begin + i;
      scores[g][i] = b < static_cast<int64_t>(s.size()) ? s[b] : 0.0f;
    }
  }
}

// ---------------------------------------------------------------------------------------
QuestPolicy::QuestPolicy(const SelectionConfig& config, const ModelDims& dims)
    : SelectionPolicy("quest", config, dims),
      summaries_(dims.num_layers,
                 std::vector<BlockKeySummary>(dims.num_kv_heads,
                                              BlockKeySummary(config.block, dims.head_dim))) {}

// Quest's bound of `block` for KV head `kv_head`: the largest over its query heads.
static float GroupQuestBound(const BlockKeySummary& sum, int64_t block, const DecodeStep& step,
                             int64_t kv_head) {
  const int64_t group = step.num_heads / step.num_kv_heads;
  float best = -INFINITY;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h)
    best = std::max(best, sum.UpperBound(block, step.queries + h * step.head_dim));
  return best;
}

void QuestPolicy::ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                                  std::vector<std::vector<float>>& scores) {
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    BlockKeySummary& sum = summaries_[step.layer][g];
    sum.Update(step.keys.keys(g), step.context_len);
    assert(sum.blocks() >= layout.cand_end);
    for (int64_t i = 0; i < layout.num_candidates(); ++i)
      scores[g][i] = GroupQuestBound(sum, layout.cand_begin + i, step, g);
  }
}

// ---------------------------------------------------------------------------------------
void OraclePolicy::ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                                   std::vector<std::vector<float>>& scores) {
  FullAttentionProbs(step, &probs_);
  const int64_t group = step.num_heads / step.num_kv_heads, b = config_.block,
                len = step.context_len;
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    for (int64_t i = 0; i < layout.num_candidates(); ++i) {
      const int64_t begin = (layout.cand_begin + i) * b;
      float s = 0.0f;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const float* p = probs_.data() + h * len;
        for (int64_t t = begin; t < begin + b; ++t) s += p[t];
      }
      scores[g][i] = s;
    }
  }
}

// ---------------------------------------------------------------------------------------
std::string_view CalibrationSourceName(CalibrationSource s) {
  switch (s) {
    case CalibrationSource::kNone:
      return "none";
    case CalibrationSource::kFull:
      return "full";
    case CalibrationSource::kQuest:
      return "quest";
    case CalibrationSource::kMeanKey:
      return "meankey";
    case CalibrationSource::kCenterL2:
      return "centerl2";
  }
  return "?";
}

absl::StatusOr<CalibrationSource> ParseCalibrationSource(std::string_view s) {
  for (CalibrationSource c :
       {CalibrationSource::kNone, CalibrationSource::kFull, CalibrationSource::kQuest,
        CalibrationSource::kMeanKey, CalibrationSource::kCenterL2}) {
    if (s == CalibrationSourceName(c)) return c;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown calibration source \"", std::string(s),
                                                 "\" (none, full, quest, meankey)"));
}

AttentionPredictorPolicy::AttentionPredictorPolicy(const SelectionConfig& config,
                                                   const ModelDims& dims, const PredictorCnn* cnn,
                                                   const PredictorOptions& options,
                                                   std::string name)
    : SelectionPolicy(std::move(name), config, dims),
      cnn_(cnn),
      options_(options),
      history_(dims.num_layers,
               std::vector<AttentionHistory>(dims.num_kv_heads, AttentionHistory(config.history))),
      summaries_(dims.num_layers,
                 std::vector<BlockKeySummary>(dims.num_kv_heads,
                                              BlockKeySummary(config.block, dims.head_dim))),
      decode_steps_(dims.num_layers, 0),
      cache_(dims.num_layers, std::vector<CnnCache>(dims.num_kv_heads)) {}

bool AttentionPredictorPolicy::IsCalibrationStep(int64_t layer) const {
  return options_.calibration != CalibrationSource::kNone && options_.calibration_step > 0 &&
         decode_steps_[layer] % options_.calibration_step == 0;
}

void AttentionPredictorPolicy::ObservePrefill(int64_t layer, int64_t prompt_len, int64_t rows,
                                              int64_t num_heads, const float* probs) {
  const int64_t b = config_.block, nb = CeilDiv(prompt_len, b);
  const int64_t use = std::min(rows, config_.history);
  row_.resize(nb);
  for (int64_t g = 0; g < dims_.num_kv_heads; ++g) {
    AttentionHistory& h = history_[layer][g];
    cache_[layer][g].pushes = 1 << 30;
    h.Reset(nb);
    for (int64_t r = rows - use; r < rows; ++r) {
      PoolGroupRow(probs + r * prompt_len, rows * prompt_len, g, dims_.group(), prompt_len, b,
                   row_.data());
      h.Push(row_);
    }
  }
  decode_steps_[layer] = 0;
}

void AttentionPredictorPolicy::SelectTokens(const DecodeStep& step,
                                            std::vector<TokenSpans>* spans) {
  ++decode_steps_[step.layer];
  SelectionPolicy::SelectTokens(step, spans);
}

void AttentionPredictorPolicy::ScoreCandidates(const DecodeStep& step, const StepLayout& layout,
                                               std::vector<std::vector<float>>& scores) {
  const int64_t ncand = layout.num_candidates();
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    AttentionHistory& h = history_[step.layer][g];
    CnnCache& cache = cache_[step.layer][g];
    if (h.cols() != layout.history_blocks) {
      if (h.cols() > layout.history_blocks) h.Reset(layout.history_blocks);  // not ours: restart
      h.Widen(layout.history_blocks);
      cache.pushes = 1 << 30;
    }
    if (ncand < 3) {  // smaller than the 3x3 kernel: no prediction, lowest blocks first
      std::fill(scores[g].begin(), scores[g].end(), 1.0f);
      cache.pushes = 1 << 30;
      continue;
    }
    const float* x = h.data() + layout.cand_begin;
    if (cache.pushes == 1 && cache.cand_begin == layout.cand_begin &&
        cache.cand_end == layout.cand_end) {
      cnn_->PredictShifted(x, h.rows(), ncand, h.cols(), scores[g].data(), cache.ws);
    } else {
      cnn_->Predict(x, h.rows(), ncand, h.cols(), scores[g].data(), cache.ws);
    }
    cache.cand_begin = layout.cand_begin, cache.cand_end = layout.cand_end, cache.pushes = 0;
  }
  if (options_.query_blocks > 0) AddQueryBlocks(step, layout, scores);
}

void AttentionPredictorPolicy::AddQueryBlocks(const DecodeStep& step, const StepLayout& layout,
                                              std::vector<std::vector<float>>& scores) {
  const int64_t keep = layout.num_select - std::min(options_.query_blocks, layout.num_select);
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    // The CNN's top `keep` rank above every bound; the other candidates by the bound.
    std::vector<char> kept(layout.num_candidates(), 0);
    for (int64_t i : TopK(scores[g], keep)) kept[i] = 1;
    BlockKeySummary& sum = summaries_[step.layer][g];
    sum.Update(step.keys.keys(g), step.context_len);
    for (int64_t i = 0; i < layout.num_candidates(); ++i) {
      scores[g][i] = kept[i] ? INFINITY : GroupQuestBound(sum, layout.cand_begin + i, step, g);
    }
  }
}

// The estimated largest q . k of summarised block `b` for an approximate calibration row.
static float BlockLogitEstimate(CalibrationSource source, const BlockKeySummary& sum, int64_t b,
                                const float* q) {
  switch (source) {
    case CalibrationSource::kQuest:
      return sum.UpperBound(b, q);
    case CalibrationSource::kCenterL2:
      return sum.CenterL2(b, q);
    default:
      return sum.MeanDot(b, q);
  }
}

void AttentionPredictorPolicy::ApproximateRow(const DecodeStep& step, const float* probs,
                                              int64_t kv_head, float* row) {
  const int64_t len = step.context_len, hd = step.head_dim, b = config_.block;
  const int64_t group = step.num_heads / step.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  BlockKeySummary& sum = summaries_[step.layer][kv_head];
  const float* keys = step.keys.keys(kv_head);
  sum.Update(keys, len);
  // Blocks the sparse attention touched keep their exact (sparse) value.
  std::vector<char> touched(CeilDiv(len, b), 0);
  for (const auto& [s, e] : last_spans_[step.layer][kv_head])
    for (int64_t i = s / b; i < CeilDiv(e, b); ++i) touched[i] = 1;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    // exp(logit - logsumexp over the selected tokens), from the most likely selected token:
    // p_ref = exp(s_ref - lse)  =>  exp(m - lse) = p_ref * exp(m - s_ref).
    const float* p = probs + h * len;
    const int64_t ref = std::max_element(p, p + len) - p;
    const float* q = step.queries + h * hd;
    float s_ref = 0.0f;
    for (int64_t j = 0; j < hd; ++j) s_ref += q[j] * keys[ref * hd + j];
    s_ref *= scale;
    for (int64_t i = 0; i < sum.blocks(); ++i) {
      if (touched[i]) continue;
      const float m = BlockLogitEstimate(options_.calibration, sum, i, q) * scale;
      const float est = std::min(1.0f, p[ref] * std::exp(m - s_ref));
      row[i] = std::max(row[i], est);
    }
  }
}

void AttentionPredictorPolicy::ObserveDecode(const DecodeStep& step, const float* probs) {
  const int64_t len = step.context_len, b = config_.block, nb = CeilDiv(len, b);
  const bool calibrate = IsCalibrationStep(step.layer);
  const float* src = probs;
  if (calibrate && options_.calibration == CalibrationSource::kFull) {
    FullAttentionProbs(step, &full_);
    src = full_.data();
  }
  row_.resize(nb);
  for (int64_t g = 0; g < step.num_kv_heads; ++g) {
    PoolGroupRow(src, len, g, dims_.group(), len, b, row_.data());
    if (calibrate && (options_.calibration == CalibrationSource::kQuest ||
                      options_.calibration == CalibrationSource::kMeanKey ||
                      options_.calibration == CalibrationSource::kCenterL2)) {
      ApproximateRow(step, probs, g, row_.data());
    }
    AttentionHistory& h = history_[step.layer][g];
    if (h.cols() > nb) h.Reset(nb), cache_[step.layer][g].pushes = 1 << 30;
    h.Push(row_);
    ++cache_[step.layer][g].pushes;
  }
}

// ---------------------------------------------------------------------------------------
const std::vector<std::string>& AllPolicyNames() {
  // clang-format off
  static const auto* names = new std::vector<std::string>{
      "full",           "streaming",       "h2o",           "snapkv",
      "quest",          "oracle",          "predictor",     "predictor-quest",
      "predictor-mean", "predictor-center", "predictor-hybrid", "predictor-nocal"};
  // clang-format on
  return *names;
}

absl::StatusOr<std::unique_ptr<SelectionPolicy>> MakePolicy(std::string_view name,
                                                            const PolicyFactoryOptions& o) {
  APR_RETURN_IF_ERROR(ValidateSelectionConfig(o.selection));
  const SelectionConfig& c = o.selection;
  if (name == "full") return std::make_unique<FullAttentionPolicy>(c, o.dims);
  if (name == "streaming") return std::make_unique<StreamingPolicy>(c, o.dims);
  if (name == "h2o") return std::make_unique<H2OPolicy>(c, o.dims);
  if (name == "snapkv") return std::make_unique<SnapKVPolicy>(c, o.dims);
  if (name == "quest") return std::make_unique<QuestPolicy>(c, o.dims);
  if (name == "oracle") return std::make_unique<OraclePolicy>(c, o.dims);
  CalibrationSource cal;
  int64_t query_blocks = 0;
  if (name == "predictor") {
    cal = CalibrationSource::kFull;
  } else if (name == "predictor-quest") {
    cal = CalibrationSource::kQuest;
  } else if (name == "predictor-mean") {
    cal = CalibrationSource::kMeanKey;
  } else if (name == "predictor-center") {
    cal = CalibrationSource::kCenterL2;
  } else if (name == "predictor-hybrid") {
    cal = CalibrationSource::kFull;
    query_blocks = std::max<int64_t>(1, c.budget_blocks() / 4);
  } else if (name == "predictor-nocal") {
    cal = CalibrationSource::kNone;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown policy \"", std::string(name),
                     "\"; known: ", absl::StrJoin(AllPolicyNames(), ", ")));
  }
  if (o.cnn == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat("policy ", std::string(name), " needs predictor weights"));
  auto p = std::make_unique<AttentionPredictorPolicy>(
      c, o.dims, o.cnn, PredictorOptions{o.calibration_step, cal, query_blocks}, std::string(name));
  return std::unique_ptr<SelectionPolicy>(std::move(p));
}

}  // namespace apr::predictor
