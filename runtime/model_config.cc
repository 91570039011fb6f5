#include "runtime/model_config.h"

#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "runtime/file_util.h"
#include "runtime/json_util.h"

namespace apr {
namespace {

using nlohmann::json;

// Sizes above this are absurd for any real model; the bound also keeps every product of
// two sizes (e.g. heads x head_dim) inside int64.
constexpr int64_t kMaxSize = (int64_t{1} << 31) - 1;

// Typed reads of one JSON object's fields. The first error is kept and later reads
// return defaults, so the parser reads straight through and checks ok() once.
class FieldReader {
 public:
  // `prefix` names a nested object in messages ("rope_scaling.").
  FieldReader(const json& obj, const std::string& source, std::string prefix = "")
      : obj_(obj), source_(source), prefix_(std::move(prefix)) {}

  // The field, or nullptr when absent or null (transformers writes null for "unset").
  const json* Find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  bool Has(const char* key) const { return Find(key) != nullptr; }

  int64_t PositiveInt(const char* key, std::optional<int64_t> fallback = std::nullopt) {
    const json* v = Find(key);
    if (v == nullptr) {
      if (!fallback) Fail(key, "is required");
      return fallback.value_or(0);
    }
    if (!v->is_number_unsigned() || v->get<uint64_t>() == 0 ||
        v->get<uint64_t>() > static_cast<uint64_t>(kMaxSize)) {
      Fail(key, absl::StrCat("must be an integer in [1, ", kMaxSize, "], got ", DescribeJson(*v)));
      return fallback.value_or(0);
    }
    return static_cast<int64_t>(v->get<uint64_t>());
  }

  double PositiveNumber(const char* key, std::optional<double> fallback = std::nullopt) {
    const json* v = Find(key);
    if (v == nullptr) {
      if (!fallback) Fail(key, "is required");
      return fallback.value_or(0);
    }
    if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>())) {
      Fail(key, absl::StrCat("must be a finite number > 0, got ", DescribeJson(*v)));
      return fallback.value_or(0);
    }
    return v->get<double>();
  }

  bool Bool(const char* key, bool fallback) {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      Fail(key, absl::StrCat("must be true or false, got ", DescribeJson(*v)));
      return fallback;
    }
    return v->get<bool>();
  }

  // nullopt when absent.
  std::optional<std::string> String(const char* key) {
    const json* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      Fail(key, absl::StrCat("must be a string, got ", DescribeJson(*v)));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  // A string that files spell `key` or `alias`; when both are present they must agree.
  std::optional<std::string> StringEitherOf(const char* key, const char* alias) {
    std::optional<std::string> a = String(key), b = String(alias);
    if (a && b && *a != *b) {
      Fail(alias, absl::StrCat("\"", *b, "\" disagrees with ", prefix_, key, " \"", *a, "\""));
    }
    return a ? a : b;
  }

  // An integer or a list of integers, each in [0, limit); empty when absent.
  std::vector<int64_t> TokenIds(const char* key, int64_t limit) {
    const json* v = Find(key);
    if (v == nullptr) return {};
    std::vector<const json*> items;
    if (v->is_array()) {
      for (const json& e : *v) items.push_back(&e);
    } else {
      items.push_back(v);
    }
    std::vector<int64_t> ids;
    for (const json* e : items) {
      if (!e->is_number_unsigned() || e->get<uint64_t>() >= static_cast<uint64_t>(limit)) {
        Fail(key, absl::StrCat("must be a token id or a list of them, each in [0, vocab_size = ",
                               limit, "), got ", DescribeJson(*v)));
        return {};
      }
      ids.push_back(static_cast<int64_t>(e->get<uint64_t>()));
    }
    return ids;
  }

  void Fail(const char* key, std::string_view what) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat(source_, ": field '", prefix_, key, "' ", std::string(what)));
    }
  }
  // An error that belongs to no single field.
  void FailConfig(std::string_view what) {
    if (status_.ok())
      status_ = absl::InvalidArgumentError(absl::StrCat(source_, ": ", std::string(what)));
  }
  // Adopts the first error of a nested reader.
  void Merge(const FieldReader& nested) {
    if (status_.ok()) status_ = nested.status_;
  }
  const absl::Status& status() const { return status_; }

 private:
  const json& obj_;
  const std::string& source_;
  std::string prefix_;
  absl::Status status_;
};

// ApplyRope rotates every dimension of a head; a partial rotation leaves some unrotated.
void CheckFullRotation(FieldReader& r) {
  if (r.Has("partial_rotary_factor") && r.PositiveNumber("partial_rotary_factor") != 1.0) {
    r.Fail("partial_rotary_factor", "other than 1 is not supported");
  }
}

// What a rope scaling block needs from the rest of the config.
struct RopeContext {
  int64_t head_dim;
  int64_t max_position_embeddings;
  int64_t top_level_original_max;  // the top-level original_max_position_embeddings, or 0
};

// A list of head_dim / 2 positive numbers (LongRoPE's short_factor / long_factor).
std::vector<double> ReadFactorList(FieldReader& r, const char* key, int64_t want) {
  const json* v = r.Find(key);
  std::vector<double> out;
  if (v == nullptr) {
    r.Fail(key, "is required");
    return out;
  }
  if (v->is_array() && static_cast<int64_t>(v->size()) == want) {
    for (const json& e : *v) {
      if (!e.is_number() || !(e.get<double>() > 0) || !std::isfinite(e.get<double>())) break;
      out.push_back(e.get<double>());
    }
  }
  if (static_cast<int64_t>(out.size()) != want) {
    r.Fail(key, absl::StrCat("must list head_dim / 2 = ", want, " numbers > 0, got ",
                             DescribeJson(*v)));
    out.clear();
  }
  return out;
}

void ReadLlama3(FieldReader& r, RopeScaling& s) {
  s.factor = r.PositiveNumber("factor");
  s.low_freq_factor = r.PositiveNumber("low_freq_factor");
  s.high_freq_factor = r.PositiveNumber("high_freq_factor");
  s.original_max_position_embeddings = r.PositiveInt("original_max_position_embeddings");
  // The llama3 formula divides by (high - low).
  if (r.status().ok() && !(s.high_freq_factor > s.low_freq_factor)) {
    r.Fail("high_freq_factor", absl::StrCat("(", s.high_freq_factor,
                                            ") must exceed low_freq_factor (",
                                            s.low_freq_factor, ")"));
  }
}

// Yarn as transformers 5 reads it: original length defaults to max_position_embeddings,
// factor to max_position_embeddings / original length; the rest are optional.
void ReadYarn(FieldReader& r, const RopeContext& ctx, RopeScaling& s) {
  s.original_max_position_embeddings =
      r.PositiveInt("original_max_position_embeddings", ctx.max_position_embeddings);
  if (!r.status().ok()) return;
  s.factor = r.PositiveNumber("factor", static_cast<double>(ctx.max_position_embeddings) /
                                            s.original_max_position_embeddings);
  s.attention_factor = r.PositiveNumber("attention_factor", 0.0);
  s.beta_fast = r.PositiveNumber("beta_fast", 0.0);
  s.beta_slow = r.PositiveNumber("beta_slow", 0.0);
  s.mscale = r.PositiveNumber("mscale", 0.0);
  s.mscale_all_dim = r.PositiveNumber("mscale_all_dim", 0.0);
  s.truncate = r.Bool("truncate", true);
}

// LongRoPE (Phi-3 style): the original length is required, inside the block or top-level.
void ReadLongRope(FieldReader& r, const RopeContext& ctx, RopeScaling& s) {
  if (r.Has("original_max_position_embeddings") || ctx.top_level_original_max == 0) {
    s.original_max_position_embeddings = r.PositiveInt("original_max_position_embeddings");
  } else {
    s.original_max_position_embeddings = ctx.top_level_original_max;
  }
  if (!r.status().ok()) return;
  s.factor = r.PositiveNumber("factor", static_cast<double>(ctx.max_position_embeddings) /
                                            s.original_max_position_embeddings);
  s.attention_factor = r.PositiveNumber("attention_factor", 0.0);
  s.short_factor = ReadFactorList(r, "short_factor", ctx.head_dim / 2);
  s.long_factor = ReadFactorList(r, "long_factor", ctx.head_dim / 2);
}

// Reads the scaling part of `rope_scaling` (transformers 4) or `rope_parameters`
// (transformers 5); both spell the type `rope_type`, older files `type`.
RopeScaling ReadRopeScaling(FieldReader& r, const RopeContext& ctx) {
  RopeScaling s;
  std::optional<std::string> type = r.StringEitherOf("rope_type", "type");
  if (!type) {
    r.Fail("rope_type", "is required");
    return s;
  }
  CheckFullRotation(r);
  if (*type == "default") return s;
  if (*type == "linear" || *type == "dynamic") {
    s.type = *type == "linear" ? RopeScaling::Type::kLinear : RopeScaling::Type::kDynamic;
    s.factor = r.PositiveNumber("factor");
  } else if (*type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
    ReadLlama3(r, s);
  } else if (*type == "yarn") {
    s.type = RopeScaling::Type::kYarn;
    ReadYarn(r, ctx, s);
  } else if (*type == "longrope") {
    s.type = RopeScaling::Type::kLongRope;
    ReadLongRope(r, ctx, s);
  } else {
    r.Fail("rope_type", absl::StrCat("\"", *type,
                                     "\" is not supported (supported: default, linear, dynamic, "
                                     "llama3, yarn, longrope)"));
  }
  return s;
}

bool SameScaling(const RopeScaling& a, const RopeScaling& b) {
  return a.type == b.type && a.factor == b.factor && a.low_freq_factor == b.low_freq_factor &&
         a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings == b.original_max_position_embeddings &&
         a.attention_factor == b.attention_factor && a.beta_fast == b.beta_fast &&
         a.beta_slow == b.beta_slow && a.mscale == b.mscale &&
         a.mscale_all_dim == b.mscale_all_dim && a.truncate == b.truncate &&
         a.short_factor == b.short_factor && a.long_factor == b.long_factor;
}

// Fills rope_theta and rope_scaling. When a file carries both spellings they must agree.
void ReadRope(FieldReader& r, const std::string& source, ModelConfig& c) {
  const double legacy_theta = r.PositiveNumber("rope_theta", 10000.0);
  const RopeContext ctx{c.head_dim, c.max_position_embeddings,
                        r.Has("original_max_position_embeddings")
                            ? r.PositiveInt("original_max_position_embeddings")
                            : 0};
  CheckFullRotation(r);
  RopeScaling legacy_scaling;
  if (const json* rs = r.Find("rope_scaling")) {
    if (!rs->is_object()) {
      r.Fail("rope_scaling", absl::StrCat("must be an object or null, got ", DescribeJson(*rs)));
      return;
    }
    FieldReader nested(*rs, source, "rope_scaling.");
    legacy_scaling = ReadRopeScaling(nested, ctx);
    r.Merge(nested);
  }
  c.rope_theta = legacy_theta;
  c.rope_scaling = legacy_scaling;

  const json* rp = r.Find("rope_parameters");
  if (rp == nullptr) return;
  if (!rp->is_object()) {
    r.Fail("rope_parameters", absl::StrCat("must be an object, got ", DescribeJson(*rp)));
    return;
  }
  FieldReader nested(*rp, source, "rope_parameters.");
  c.rope_theta = nested.PositiveNumber("rope_theta", legacy_theta);
  c.rope_scaling = ReadRopeScaling(nested, ctx);
  r.Merge(nested);
  if (!r.status().ok()) return;
  if (r.Has("rope_theta") && c.rope_theta != legacy_theta) {
    r.Fail("rope_theta",
           absl::StrCat(legacy_theta, " disagrees with rope_parameters.rope_theta ", c.rope_theta));
  }
  if (r.Has("rope_scaling") && !SameScaling(legacy_scaling, c.rope_scaling)) {
    r.Fail("rope_scaling", "disagrees with rope_parameters");
  }
}

std::optional<DType> ParseTorchDType(const std::string& s) {
  if (s == "bfloat16") return DType::kBF16;
  if (s == "float16") return DType::kF16;
  if (s == "float32") return DType::kF32;
  return std::nullopt;
}

void ReadDType(FieldReader& r, ModelConfig& c) {
  // transformers 5 writes `dtype`, older versions `torch_dtype`.
  std::optional<std::string> name = r.StringEitherOf("torch_dtype", "dtype");
  if (!name) return;
  if (std::optional<DType> t = ParseTorchDType(*name)) {
    c.torch_dtype = *t;
  } else {
    r.Fail(r.Has("torch_dtype") ? "torch_dtype" : "dtype",
           absl::StrCat("\"", *name, "\" is not supported (bfloat16, float16, float32)"));
  }
}

// Each accepted model_type and the transformers class its checkpoints name.
struct FamilyName {
  ModelFamily family;
  const char* model_type;
  const char* architecture;
};
constexpr FamilyName kFamilies[] = {
    {ModelFamily::kLlama, "llama", "LlamaForCausalLM"},
    {ModelFamily::kMistral, "mistral", "MistralForCausalLM"},
    {ModelFamily::kQwen2, "qwen2", "Qwen2ForCausalLM"},
    {ModelFamily::kQwen3, "qwen3", "Qwen3ForCausalLM"},
};

// Llama and Mistral checkpoints run the same decoder, so either class name fits either type.
bool SameDecoder(ModelFamily a, ModelFamily b) {
  auto llama_like = [](ModelFamily f) {
    return f == ModelFamily::kLlama || f == ModelFamily::kMistral;
  };
  return a == b || (llama_like(a) && llama_like(b));
}

// Checks the fields that say which model this is, before reading any size, and sets
// c.family: from model_type, else from the first known class in architectures, else llama.
void CheckArchitecture(FieldReader& r, ModelConfig& c) {
  if (r.Has("quantization_config")) {
    r.FailConfig("quantized checkpoints (quantization_config) are not supported");
  }
  const std::optional<std::string> type = r.String("model_type");
  const FamilyName* by_type = nullptr;
  for (const FamilyName& f : kFamilies) {
    if (type && *type == f.model_type) by_type = &f;
  }
  if (type && by_type == nullptr) {
    r.Fail("model_type",
           absl::StrCat("\"", *type, "\" is not supported (llama, mistral, qwen2, qwen3)"));
    return;
  }
  const FamilyName* by_class = nullptr;
  if (const json* a = r.Find("architectures")) {
    if (a->is_array()) {
      for (const json& e : *a) {
        for (const FamilyName& f : kFamilies) {
          const bool fits = by_type == nullptr || SameDecoder(f.family, by_type->family);
          if (by_class == nullptr && fits && e.is_string() && e == f.architecture) by_class = &f;
        }
      }
    }
    if (by_class == nullptr) {
      r.Fail("architectures",
             by_type == nullptr
                 ? absl::StrCat("must list LlamaForCausalLM, MistralForCausalLM, "
                                "Qwen2ForCausalLM or Qwen3ForCausalLM, got ", DescribeJson(*a))
                 : absl::StrCat("must list ", by_type->architecture, " for model_type \"",
                                *type, "\", got ", DescribeJson(*a)));
    }
  }
  c.family = by_type ? by_type->family : by_class ? by_class->family : ModelFamily::kLlama;
  if (std::optional<std::string> act = r.String("hidden_act"); act && *act != "silu") {
    r.Fail("hidden_act", absl::StrCat("\"", *act, "\" is not supported (silu)"));
  }
}

void ReadShape(FieldReader& r, ModelConfig& c) {
  c.vocab_size = r.PositiveInt("vocab_size");
  c.hidden_size = r.PositiveInt("hidden_size");
  c.intermediate_size = r.PositiveInt("intermediate_size");
  c.num_hidden_layers = r.PositiveInt("num_hidden_layers");
  c.num_attention_heads = r.PositiveInt("num_attention_heads");
  c.max_position_embeddings = r.PositiveInt("max_position_embeddings");
  if (!r.status().ok()) return;
  c.num_key_value_heads = r.PositiveInt("num_key_value_heads", c.num_attention_heads);
  if (r.status().ok() && c.num_attention_heads % c.num_key_value_heads != 0) {
    r.Fail("num_key_value_heads",
           absl::StrCat("(", c.num_key_value_heads, ") must divide num_attention_heads (",
                        c.num_attention_heads, ")"));
  }
  if (r.Has("head_dim")) {
    c.head_dim = r.PositiveInt("head_dim");
  } else if (c.hidden_size % c.num_attention_heads != 0) {
    r.Fail("num_attention_heads",
           absl::StrCat("(", c.num_attention_heads, ") must divide hidden_size (", c.hidden_size,
                        ") when head_dim is absent"));
  } else {
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.rms_norm_eps = r.PositiveNumber("rms_norm_eps", 1e-6);
}

// Mistral's window (null, or one covering every position, is global attention). Qwen2/3
// keep a window in every config but use it only under use_sliding_window, which is refused.
void ReadSlidingWindow(FieldReader& r, ModelConfig& c) {
  if (c.family == ModelFamily::kQwen2 || c.family == ModelFamily::kQwen3) {
    if (r.Bool("use_sliding_window", false)) {
      r.Fail("use_sliding_window",
             "true is not supported (sliding windows are implemented for mistral only)");
    }
    return;
  }
  if (!r.Has("sliding_window")) return;
  const int64_t window = r.PositiveInt("sliding_window");
  if (!r.status().ok() || window >= c.max_position_embeddings) return;
  if (c.family != ModelFamily::kMistral) {
    r.Fail("sliding_window", absl::StrCat("(", window, ") below max_position_embeddings (",
                                          c.max_position_embeddings,
                                          ") is supported for model_type mistral only"));
    return;
  }
  c.sliding_window = window;
}

// transformers 5 lists each layer's attention kind; one kind for every layer is all the
// decoder does (global, or Mistral's window on every layer).
void CheckLayerTypes(FieldReader& r, const ModelConfig& c) {
  const json* v = r.Find("layer_types");
  if (v == nullptr) return;
  const char* want = c.sliding_window > 0 ? "sliding_attention" : "full_attention";
  bool ok = v->is_array() && static_cast<int64_t>(v->size()) == c.num_hidden_layers;
  if (ok) {
    for (const json& e : *v) ok = ok && e.is_string() && e == want;
  }
  if (!ok) {
    r.Fail("layer_types", absl::StrCat("must list \"", want, "\" for each of the ",
                                       c.num_hidden_layers, " layers, got ", DescribeJson(*v)));
  }
}

// The parts of the attention block that differ between families.
void ReadAttentionVariant(FieldReader& r, ModelConfig& c) {
  ReadSlidingWindow(r, c);
  if (!r.status().ok()) return;
  CheckLayerTypes(r, c);
  // Qwen2Attention has q/k/v biases whatever the config says; the others follow
  // attention_bias, which Llama and Qwen3 apply to o_proj too (not implemented).
  c.qkv_bias = c.family == ModelFamily::kQwen2;
  c.qk_norm = c.family == ModelFamily::kQwen3;
  if (c.family != ModelFamily::kQwen2) {
    c.attention_bias = r.Bool("attention_bias", false);
    if (c.attention_bias) r.Fail("attention_bias", "true is not supported");
  }
  c.mlp_bias = r.Bool("mlp_bias", false);
  if (c.mlp_bias) r.Fail("mlp_bias", "true is not supported");
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source) {
  const std::string src(source);
  absl::StatusOr<json> root = ParseJson(json_text, src);
  if (!root.ok()) return root.status();
  if (!root->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(src, ": config must be a JSON object, got ", root->type_name()));
  }
  ModelConfig c;
  FieldReader r(*root, src);
  CheckArchitecture(r, c);
  if (!r.status().ok()) return r.status();
  ReadShape(r, c);
  if (!r.status().ok()) return r.status();
  ReadRope(r, src, c);
  c.tie_word_embeddings = r.Bool("tie_word_embeddings", false);
  ReadAttentionVariant(r, c);
  c.bos_token_ids = r.TokenIds("bos_token_id", c.vocab_size);
  c.eos_token_ids = r.TokenIds("eos_token_id", c.vocab_size);
  ReadDType(r, c);
  if (!r.status().ok()) return r.status();
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseModelConfig(*text, path);
}

}  // namespace apr
