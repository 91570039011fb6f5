// record: writes predictor training traces (predictor/recorder.h) from real decoding of a
// corpus split: random windows of the split's token stream (documents shuffled, each as
// <|begin_of_text|> ids <|end_of_text|>, as the model was trained), a prompt of random
// length prefilled, then `steps` tokens of the same text decoded one at a time.
// Refuses the held-out split: it is for evaluation only.
//
//   record --corpus /tmp/corpus/train.jsonl --out /tmp/traces/train.trace --sequences 160
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backends/cpu/cpu_decoder.h"
#include "base/status_macros.h"
#include "predictor/cnn.h"
#include "predictor/eval/eval_util.h"
#include "predictor/policy.h"
#include "predictor/recorder.h"
#include "runtime/model_path.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "models/apr-tiny", "model folder");
ABSL_FLAG(std::string, corpus, "", "corpus split (train.jsonl or valid.jsonl); never heldout");
ABSL_FLAG(std::string, out, "", "trace file to write");
ABSL_FLAG(int64_t, sequences, 100, "windows to decode");
ABSL_FLAG(int64_t, min_prompt, 1024, "shortest prompt (tokens)");
ABSL_FLAG(int64_t, max_prompt, 3840, "longest prompt (tokens); prompt + steps <= context");
ABSL_FLAG(int64_t, steps, 192, "decode steps per window");
ABSL_FLAG(int64_t, stream_tokens, 3000000, "tokenize shuffled documents until this many tokens");
ABSL_FLAG(uint64_t, seed, 1, "seed for document order, windows and prompt lengths");
ABSL_FLAG(std::string, policy, "",
          "empty: decode with full attention; predictor[-quest|-mean|-nocal]: decode under "
          "that policy and record the history rows it builds (on-policy inputs)");
ABSL_FLAG(std::string, predictor, "", "predictor weights for --policy");
ABSL_FLAG(int64_t, budget, 256, "token budget for --policy");
ABSL_FLAG(int64_t, calibration_step, 5, "calibration period for --policy");

namespace apr::predictor {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "record: %s\n", std::string(s.message()).c_str());
  return 1;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The documents in `order`, each between BOS and EOS, until --stream_tokens tokens.
std::vector<int32_t> TokenStream(const Tokenizer& tok, const std::vector<CorpusDoc>& docs,
                                 const std::vector<size_t>& order) {
  const int32_t bos = *tok.TokenToId("<|begin_of_text|>"), eos = *tok.TokenToId("<|end_of_text|>");
  std::vector<int32_t> stream;
  for (size_t i : order) {
    if (static_cast<int64_t>(stream.size()) >= absl::GetFlag(FLAGS_stream_tokens)) break;
    stream.push_back(bos);
    const auto ids = tok.Encode(docs[i].text, false);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(eos);
  }
  return stream;
}

// One window: its first `prompt` tokens prefilled, the rest decoded teacher-forced under
// --policy (or full attention), the recorder's tracks written as sequence n.
absl::Status RecordWindow(cpu::CpuDecoder& dec, const std::string& policy_name,
                          const PolicyFactoryOptions& po, absl::Span<const int32_t> window,
                          int64_t prompt, uint32_t n, TraceWriter& writer) {
  std::unique_ptr<SelectionPolicy> policy;
  if (!policy_name.empty()) policy = *MakePolicy(policy_name, po);
  TraceRecorder rec(po.selection, po.dims, static_cast<AttentionPredictorPolicy*>(policy.get()));
  auto seq = dec.NewSequence(&rec);
  std::vector<float> logits;
  APR_RETURN_IF_ERROR(dec.Prefill(*seq, window.subspan(0, prompt), &logits));
  for (size_t k = prompt; k < window.size(); ++k)
    APR_RETURN_IF_ERROR(dec.Decode(*seq, window[k], &logits));
  for (const Track& t : rec.TakeTracks(n)) APR_RETURN_IF_ERROR(writer.Write(t));
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Records predictor training traces from decoding a corpus split.\n"
      "  record --corpus train.jsonl --out train.trace [--sequences 100] [--policy predictor]");
  absl::ParseCommandLine(argc, argv);
  const std::string corpus = absl::GetFlag(FLAGS_corpus), out = absl::GetFlag(FLAGS_out);
  if (corpus.empty() || out.empty())
    return Fail(absl::InvalidArgumentError("--corpus and --out are required"));
  if (absl::StrContains(corpus, "heldout"))
    return Fail(absl::InvalidArgumentError(
        "the held-out split is for evaluation only and never used for predictor training"));
  const std::string dir = ResolveModelDir(absl::GetFlag(FLAGS_model));
  auto dec = cpu::CpuDecoder::Load(dir);
  if (!dec.ok()) return Fail(dec.status());
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tok.ok()) return Fail(tok.status());
  const int64_t steps = absl::GetFlag(FLAGS_steps), lo = absl::GetFlag(FLAGS_min_prompt),
                hi = absl::GetFlag(FLAGS_max_prompt);
  if (lo < 1 || hi < lo || hi + steps > (*dec)->config().max_position_embeddings)
    return Fail(absl::InvalidArgumentError(
        "need 1 <= min_prompt <= max_prompt and max_prompt + steps <= context"));

  std::optional<PredictorCnn> cnn;
  const std::string policy_name = absl::GetFlag(FLAGS_policy);
  PolicyFactoryOptions po;
  po.selection.budget = absl::GetFlag(FLAGS_budget);
  po.dims = DimsOf((*dec)->config());
  po.calibration_step = absl::GetFlag(FLAGS_calibration_step);
  if (!policy_name.empty()) {
    if (policy_name.rfind("predictor", 0) != 0)
      return Fail(absl::InvalidArgumentError("--policy must be a predictor policy"));
    auto c = PredictorCnn::Load(ResolveUserPath(absl::GetFlag(FLAGS_predictor)));
    if (!c.ok()) return Fail(c.status());
    cnn = *std::move(c);
    po.cnn = &*cnn;
    if (auto p = MakePolicy(policy_name, po); !p.ok()) return Fail(p.status());
  }

  auto docs = ReadCorpusJsonl(ResolveUserPath(corpus));
  if (!docs.ok()) return Fail(docs.status());
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::vector<size_t> order(docs->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const std::vector<int32_t> stream = TokenStream(**tok, *docs, order);
  if (static_cast<int64_t>(stream.size()) < hi + steps + 1)
    return Fail(absl::InvalidArgumentError("the corpus is shorter than one window"));
  std::printf("record: %zu-token stream from %s\n", stream.size(), corpus.c_str());

  const SelectionConfig sel = po.selection;
  auto writer = TraceWriter::Create(
      ResolveUserPath(out),
      TraceHeader{static_cast<uint32_t>(sel.block), static_cast<uint32_t>(sel.history),
                  static_cast<uint32_t>(po.dims.num_layers),
                  static_cast<uint32_t>(po.dims.num_kv_heads)});
  if (!writer.ok()) return Fail(writer.status());
  const double start = Now();
  for (int64_t n = 0; n < absl::GetFlag(FLAGS_sequences); ++n) {
    const int64_t prompt = lo + static_cast<int64_t>(rng() % (hi - lo + 1));
    const int64_t at = static_cast<int64_t>(rng() % (stream.size() - prompt - steps));
    if (absl::Status s =
            RecordWindow(**dec, policy_name, po, absl::MakeConstSpan(&stream[at], prompt + steps),
                         prompt, static_cast<uint32_t>(n), **writer);
        !s.ok())
      return Fail(s);
    std::printf(
        "record: %lld/%lld prompt %lld at %lld, %.1f MB, %.0f s\n", static_cast<long long>(n + 1),
        static_cast<long long>(absl::GetFlag(FLAGS_sequences)), static_cast<long long>(prompt),
        static_cast<long long>(at), (*writer)->bytes_written() / 1e6, Now() - start);
    std::fflush(stdout);
  }
  if (absl::Status s = (*writer)->Close(); !s.ok()) return Fail(s);
  return 0;
}

}  // namespace
}  // namespace apr::predictor

int main(int argc, char** argv) { return apr::predictor::Main(argc, argv); }
