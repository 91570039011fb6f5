#include "backends/cpu/cpu_decoder.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/cpu/attention.h"
#include "backends/cpu/kv_cache.h"
#include "backends/cpu/kv_offload_io.h"
#include "backends/cpu/ops.h"
#include "base/status_macros.h"
#include "runtime/checkpoint.h"
#include "runtime/rope.h"

namespace apr::cpu {
namespace {

// q, k, v of `n` normed rows: the projections, Qwen2's biases, Qwen3's per-head q/k
// RMSNorm (over head_dim, before RoPE, as Qwen3Attention applies them).
void ProjectQkv(const ModelConfig& c, const LlamaLayerWeights& lw, const float* xn, int64_t n,
                float* q, float* k, float* v) {
  const int64_t h = c.hidden_size, hd = c.head_dim;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  MatMulT(xn, n, h, lw.q_proj.data(), q_dim, q);
  MatMulT(xn, n, h, lw.k_proj.data(), kv_dim, k);
  MatMulT(xn, n, h, lw.v_proj.data(), kv_dim, v);
  if (c.qkv_bias) {
    AddBiasRows(q, lw.q_bias.data(), n, q_dim);
    AddBiasRows(k, lw.k_bias.data(), n, kv_dim);
    AddBiasRows(v, lw.v_bias.data(), n, kv_dim);
  }
  if (c.qk_norm) {
    RmsNorm(q, lw.q_norm.data(), n * c.num_attention_heads, hd, c.rms_norm_eps, q);
    RmsNorm(k, lw.k_norm.data(), n * c.num_key_value_heads, hd, c.rms_norm_eps, k);
  }
}

// Rotates the `n` new rows' q and k (positions start, ...) and appends their k, v to the
// layer's cache.
void RopeAndAppend(const AttentionDims& d, const RopeTable& rope, int64_t start, int64_t n,
                   float* q, float* k, const float* v, LayerKv& kv) {
  const int64_t nh = d.num_heads, nkv = d.num_kv_heads, hd = d.head_dim;
  for (int64_t i = 0; i < n; ++i) {
    ApplyRope(rope, start + i, nh, hd, &q[i * nh * hd]);
    ApplyRope(rope, start + i, nkv, hd, &k[i * nkv * hd]);
    for (int64_t g = 0; g < nkv; ++g) {
      HeadKv& head = kv.heads[g];
      head.k.insert(head.k.end(), &k[(i * nkv + g) * hd], &k[(i * nkv + g + 1) * hd]);
      head.v.insert(head.v.end(), &v[(i * nkv + g) * hd], &v[(i * nkv + g + 1) * hd]);
    }
  }
}

}  // namespace

class CpuDecoder::CpuSequence : public Sequence {
 public:
  CpuSequence(const ModelConfig& c, AttentionHooks* hooks)
      : hooks(hooks), layers(c.num_hidden_layers) {
    for (LayerKv& l : layers) l.heads.resize(c.num_key_value_heads);
  }
  int64_t length() const override { return len; }

  AttentionHooks* hooks;
  std::vector<LayerKv> layers;
  int64_t len = 0;
  // Offload (kv_offload.h): where complete blocks go, the decode step's gathered view of
  // the selected blocks, and whether an offload error left the cache inconsistent.
  KvOffload* offload = nullptr;
  LayerKv offload_view;
  std::vector<float> offload_scratch;
  bool broken = false;
};

CpuDecoder::CpuDecoder(LlamaWeights weights) : w_(std::move(weights)) {}

absl::StatusOr<std::unique_ptr<CpuDecoder>> CpuDecoder::Load(const std::string& model_dir) {
  auto ckpt = Checkpoint::Open(model_dir);
  if (!ckpt.ok()) return ckpt.status();
  auto weights = LoadLlamaWeightsF32(**ckpt);
  if (!weights.ok()) return weights.status();
  return std::make_unique<CpuDecoder>(*std::move(weights));
}

std::unique_ptr<Sequence> CpuDecoder::NewSequence(AttentionHooks* hooks) {
  return std::make_unique<CpuSequence>(w_.config, hooks);
}

absl::StatusOr<std::unique_ptr<Sequence>> CpuDecoder::Fork(const Sequence& base,
                                                           AttentionHooks* hooks) const {
  const auto& seq = static_cast<const CpuSequence&>(base);
  // An offloaded sequence's blocks live in its KvOffload, which a copy would share.
  if (seq.offload != nullptr) {
    return absl::FailedPreconditionError("an offloaded sequence cannot be forked");
  }
  auto copy = std::make_unique<CpuSequence>(w_.config, hooks);
  copy->layers = seq.layers;
  copy->len = seq.len;
  return std::unique_ptr<Sequence>(std::move(copy));
}

absl::StatusOr<std::unique_ptr<Sequence>> CpuDecoder::NewOffloadedSequence(KvOffload* offload,
                                                                           AttentionHooks* hooks) {
  if (offload == nullptr) return absl::InvalidArgumentError("no KV offload given");
  if (offload->block_bytes() != OffloadBlockBytes(w_.config.head_dim)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the KV offload stores blocks of ", offload->block_bytes(),
                     " bytes; the CPU decoder needs ", OffloadBlockBytes(w_.config.head_dim),
                     " (2 x 16 tokens x head_dim ", w_.config.head_dim, " x 4-byte floats)"));
  }
  auto seq = std::make_unique<CpuSequence>(w_.config, hooks);
  seq->offload = offload;
  return seq;
}

absl::Status CpuDecoder::CheckTokens(const CpuSequence& seq,
                                     absl::Span<const int32_t> tokens) const {
  const ModelConfig& c = w_.config;
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens given");
  if (seq.broken) {
    return absl::FailedPreconditionError(
        "the sequence is unusable: an earlier KV offload error left its cache inconsistent");
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  if (seq.len + static_cast<int64_t>(tokens.size()) > c.max_position_embeddings) {
    return absl::OutOfRangeError(absl::StrCat("sequence would reach ", seq.len + tokens.size(),
                                              " tokens; the model's max_position_embeddings is ",
                                              c.max_position_embeddings));
  }
  return absl::OkStatus();
}

absl::Status CpuDecoder::Forward(CpuSequence& seq, absl::Span<const int32_t> tokens, bool decode,
                                 std::vector<float>& x) {
  const ModelConfig& c = w_.config;
  const int64_t n = static_cast<int64_t>(tokens.size()), h = c.hidden_size, hd = c.head_dim;
  const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads,
                inter = c.intermediate_size;
  const int64_t start = seq.len, ctx = start + n;
  const AttentionDims dims{nh, nkv, hd, c.sliding_window};
  // Per forward pass, as transformers picks longrope's factors and dynamic NTK's base.
  const RopeParams rp = RopeForContext(c, ctx);
  const RopeTable rope = MakeRopeTable(rp.inv_freq, start, ctx, rp.attention_factor);
  AttentionHooks* hooks = seq.hooks;
  const bool decode_hooks = hooks != nullptr && decode;
  const int64_t observed_rows =
      hooks != nullptr && !decode_hooks ? std::min(hooks->PrefillRowsWanted(), n) : 0;

  x.resize(n * h);
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(&x[i * h], &w_.embed_tokens[tokens[i] * h], sizeof(float) * h);
  std::vector<float> xn(n * h), q(n * nh * hd), k(n * nkv * hd), v(n * nkv * hd), attn(n * nh * hd),
      proj(n * h), gate(n * inter), up(n * inter), observed, probs;
  std::vector<TokenSpans> spans;
  std::vector<const float*> key_ptrs(nkv);

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LlamaLayerWeights& lw = w_.layers[l];
    LayerKv& kv = seq.layers[l];
    RmsNorm(x.data(), lw.input_norm.data(), n, h, c.rms_norm_eps, xn.data());
    ProjectQkv(c, lw, xn.data(), n, q.data(), k.data(), v.data());
    RopeAndAppend(dims, rope, start, n, q.data(), k.data(), v.data(), kv);
    if (seq.offload != nullptr) {
      if (absl::Status s =
              WriteCompletedBlocks(*seq.offload, kv, l, hd, start, ctx, seq.offload_scratch);
          !s.ok()) {
        seq.broken = true;
        return s;
      }
    }
    if (decode) {
      for (int64_t g = 0; g < nkv; ++g) key_ptrs[g] = kv.heads[g].k.data();
      DecodeStep step{l, start, ctx, nh, nkv, hd, q.data(), KeysView{key_ptrs.data(), ctx, hd}};
      spans.clear();
      if (decode_hooks) hooks->SelectTokens(step, &spans);
      const std::vector<TokenSpans>* selected = spans.empty() ? nullptr : &spans;
      // With an offload, the selected complete blocks come back from it.
      const LayerKv* source = &kv;
      if (seq.offload != nullptr) {
        if (absl::Status s = GatherSelectedBlocks(*seq.offload, kv, l, hd, ctx, selected,
                                                  seq.offload_view, seq.offload_scratch);
            !s.ok()) {
          seq.broken = true;
          return s;
        }
        source = &seq.offload_view;
      }
      const bool want = decode_hooks && hooks->WantsProbabilities();
      if (want) probs.resize(nh * ctx);
      DecodeAttention(dims, *source, q.data(), ctx, selected, attn.data(),
                      want ? probs.data() : nullptr);
      if (want) hooks->ObserveDecode(step, probs.data());
    } else {
      if (observed_rows > 0) observed.resize(nh * observed_rows * ctx);
      PrefillAttention(dims, kv, q.data(), start, n, attn.data(),
                       observed_rows > 0 ? observed.data() : nullptr, observed_rows);
      if (observed_rows > 0) hooks->ObservePrefill(l, ctx, observed_rows, nh, observed.data());
    }
    MatMulT(attn.data(), n, nh * hd, lw.o_proj.data(), h, proj.data());
    AddInPlace(x.data(), proj.data(), n * h);

    RmsNorm(x.data(), lw.post_attn_norm.data(), n, h, c.rms_norm_eps, xn.data());
    MatMulT(xn.data(), n, h, lw.gate_proj.data(), inter, gate.data());
    MatMulT(xn.data(), n, h, lw.up_proj.data(), inter, up.data());
    SiluMul(gate.data(), up.data(), n * inter);
    MatMulT(gate.data(), n, inter, lw.down_proj.data(), h, proj.data());
    AddInPlace(x.data(), proj.data(), n * h);
  }
  seq.len = ctx;
  return absl::OkStatus();
}

void CpuDecoder::Logits(const float* x, int64_t rows, float* logits) const {
  const ModelConfig& c = w_.config;
  std::vector<float> xn(rows * c.hidden_size);
  RmsNorm(x, w_.final_norm.data(), rows, c.hidden_size, c.rms_norm_eps, xn.data());
  MatMulT(xn.data(), rows, c.hidden_size, w_.lm_head.data(), c.vocab_size, logits);
}

absl::Status CpuDecoder::Prefill(Sequence& base, absl::Span<const int32_t> tokens,
                                 std::vector<float>* last_logits, std::vector<float>* all_logits) {
  auto& seq = static_cast<CpuSequence&>(base);
  APR_RETURN_IF_ERROR(CheckTokens(seq, tokens));
  std::vector<float> x;
  APR_RETURN_IF_ERROR(Forward(seq, tokens, /*decode=*/false, x));
  const int64_t n = tokens.size(), h = w_.config.hidden_size, vocab = w_.config.vocab_size;
  if (all_logits != nullptr) {
    all_logits->resize(n * vocab);
    Logits(x.data(), n, all_logits->data());
  }
  if (last_logits != nullptr) {
    last_logits->resize(vocab);
    if (all_logits != nullptr) {
      std::memcpy(last_logits->data(), all_logits->data() + (n - 1) * vocab, sizeof(float) * vocab);
    } else {
      Logits(x.data() + (n - 1) * h, 1, last_logits->data());
    }
  }
  return absl::OkStatus();
}

absl::Status CpuDecoder::DecodeBatch(absl::Span<Sequence* const> seqs,
                                     absl::Span<const int32_t> tokens, std::vector<float>* logits) {
  if (seqs.size() != tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(seqs.size(), " sequences but ", tokens.size(), " tokens"));
  }
  for (size_t b = 0; b < seqs.size(); ++b) {
    auto& seq = static_cast<CpuSequence&>(*seqs[b]);
    APR_RETURN_IF_ERROR(CheckTokens(seq, tokens.subspan(b, 1)));
    if (seq.len == 0)
      return absl::FailedPreconditionError("decode before prefill: the sequence is empty");
    for (size_t o = 0; o < b; ++o) {
      if (seqs[o] == seqs[b])
        return absl::InvalidArgumentError("a sequence appears twice in one decode batch");
    }
  }
  const int64_t vocab = w_.config.vocab_size;
  logits->resize(seqs.size() * vocab);
  std::vector<float> x;
  for (size_t b = 0; b < seqs.size(); ++b) {
    APR_RETURN_IF_ERROR(
        Forward(static_cast<CpuSequence&>(*seqs[b]), tokens.subspan(b, 1), /*decode=*/true, x));
    Logits(x.data(), 1, logits->data() + b * vocab);
  }
  return absl::OkStatus();
}

}  // namespace apr::cpu
