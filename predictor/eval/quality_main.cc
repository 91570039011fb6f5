// quality: every selection policy side by side on the bundled model's held-out texts
// (docs/QUALITY.md). For each text, a prompt of `context - decode_tokens` tokens is
// prefilled once (dense attention, as in serving) and every (policy, budget) decodes from a
// copy of that state:
//   * perplexity: the text's next `decode_tokens` tokens, teacher-forced;
//   * greedy agreement: the tokens full attention generates greedily from the same prompt,
//     teacher-forced; a step agrees when the policy's arg max equals full attention's token
//     (small models fall into greedy loops, which every policy continues: see QUALITY.md);
//   * next-token agreement: along the true continuation, the policy's arg max equals full
//     attention's arg max;
//   * attention recall and top-k hit rate at every decode step of both (predictor/measure.h);
// then pass-key retrieval at several depths of a `context`-token prompt.
// Prints one progress line per (text, run) and the table last.
//
//   bazel run -c opt //predictor/eval:quality -- --heldout /tmp/corpus/heldout.jsonl
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "backends/cpu/cpu_decoder.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "predictor/cnn.h"
#include "predictor/eval/eval_util.h"
#include "predictor/measure.h"
#include "predictor/policy.h"
#include "runtime/model_path.h"
#include "runtime/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "models/apr-tiny",
          "model folder (config.json, weights, tokenizer.json)");
ABSL_FLAG(std::string, predictor, "", "predictor weights (default: <model>/predictor.safetensors)");
ABSL_FLAG(std::string, heldout, "",
          "held-out split of the corpus (heldout.jsonl from tools/model/build_corpus.py)");
ABSL_FLAG(int64_t, texts, 5, "held-out texts for perplexity, agreement and recall");
ABSL_FLAG(int64_t, context, 4096, "context length C; budgets are C / N");
ABSL_FLAG(int64_t, decode_tokens, 256, "decode steps per text and task");
ABSL_FLAG(std::vector<std::string>, budgets, std::vector<std::string>({"4", "8", "16"}),
          "budget fractions: N gives a budget of C / N tokens (sink + local included)");
ABSL_FLAG(std::vector<std::string>, policies,
          std::vector<std::string>({"streaming", "h2o", "snapkv", "quest", "oracle", "predictor",
                                    "predictor-quest", "predictor-mean"}),
          "sparse policies to run (full attention always runs); see predictor/policy.h");
ABSL_FLAG(std::vector<std::string>, passkey_depths,
          std::vector<std::string>({"10", "30", "50", "70", "90"}), "needle depths in percent");
ABSL_FLAG(int64_t, passkey_keys, 3, "keys per depth (0: no pass-key test)");
ABSL_FLAG(int64_t, calibration_step, 5, "predictor calibration period (0: never)");
ABSL_FLAG(int64_t, dense_layers, 0,
          "layers [0, N) attend to everything under every policy (the official skip_2layer is 2)");
ABSL_FLAG(uint64_t, seed, 1, "seed for pass keys and filler offsets");
ABSL_FLAG(std::string, json_out, "", "also write every number as JSON here");

namespace apr::predictor {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "quality: %s\n", std::string(s.message()).c_str());
  return 1;
}

int32_t ArgMax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

double LogSoftmaxAt(const std::vector<float>& v, int32_t i) {
  const float mx = *std::max_element(v.begin(), v.end());
  double z = 0;
  for (float x : v) z += std::exp(double(x) - mx);
  return double(v[i]) - mx - std::log(z);
}

struct RunResult {
  std::string policy;
  int64_t fraction = 0;  // budget = C / fraction; 0 for full attention
  int64_t budget = 0;
  SelectionStats stats;
  int64_t agree = 0, agree_steps = 0;            // on full attention's greedy generation
  int64_t text_agree = 0, text_agree_steps = 0;  // on the held-out continuation
  double nll = 0;
  int64_t nll_tokens = 0;
  int64_t passkey_ok = 0, passkey_n = 0, passkey_digits = 0;  // digits in the right place
  double decode_seconds = 0;
  int64_t decode_steps = 0;

  std::string label() const {
    return fraction == 0 ? policy : absl::StrCat(policy, "@1/", fraction);
  }
  double ppl() const { return nll_tokens ? std::exp(nll / nll_tokens) : 0; }
};

class Harness {
 public:
  Harness(cpu::CpuDecoder* dec, const Tokenizer* tok, const PredictorCnn* cnn,
          std::vector<RunResult>* runs)
      : dec_(dec), tok_(tok), cnn_(cnn), runs_(runs) {}

  absl::StatusOr<std::unique_ptr<SelectionPolicy>> NewPolicy(const RunResult& r) const {
    PolicyFactoryOptions o;
    o.selection.budget = r.fraction == 0 ? absl::GetFlag(FLAGS_context) : r.budget;
    o.selection.dense_layers = absl::GetFlag(FLAGS_dense_layers);
    o.dims = DimsOf(dec_->config());
    o.cnn = cnn_;
    o.calibration_step = absl::GetFlag(FLAGS_calibration_step);
    return MakePolicy(r.policy, o);
  }

  // One held-out text: prefill once, then perplexity and agreement under every run.
  absl::Status Text(const std::vector<int32_t>& x, const std::string& name) {
    const int64_t c = absl::GetFlag(FLAGS_context), t = absl::GetFlag(FLAGS_decode_tokens);
    const int64_t p = c - t;
    const size_t n = runs_->size();
    std::vector<std::unique_ptr<SelectionPolicy>> ppl_pol(n), gen_pol(n);
    std::vector<std::unique_ptr<MeasuredHooks>> ppl_hooks(n), gen_hooks(n);
    std::vector<AttentionHooks*> all;
    for (size_t i = 0; i < n; ++i) {
      auto a = NewPolicy((*runs_)[i]);
      if (!a.ok()) return a.status();
      auto b = NewPolicy((*runs_)[i]);
      if (!b.ok()) return b.status();
      ppl_pol[i] = *std::move(a), gen_pol[i] = *std::move(b);
      ppl_hooks[i] = std::make_unique<MeasuredHooks>(ppl_pol[i].get(), &(*runs_)[i].stats);
      gen_hooks[i] = std::make_unique<MeasuredHooks>(gen_pol[i].get(), &(*runs_)[i].stats);
      all.push_back(ppl_hooks[i].get());
      all.push_back(gen_hooks[i].get());
    }
    PrefillFanOut fan(all);
    auto seq = dec_->NewSequence(&fan);
    std::vector<float> logits;
    const double t0 = Now();
    APR_RETURN_IF_ERROR(dec_->Prefill(*seq, absl::MakeConstSpan(x.data(), p), &logits));
    std::printf("[%s] prefill of %lld tokens: %.1f s\n", name.c_str(), static_cast<long long>(p),
                Now() - t0);
    const std::vector<float> prefill_logits = logits;

    // Full attention's greedy continuation, and its arg max along the true continuation:
    // run 0 is full attention and defines both.
    std::vector<int32_t> g = {ArgMax(prefill_logits)}, full_next;
    for (size_t i = 0; i < n; ++i) {
      RunResult& r = (*runs_)[i];
      // Generation (full attention first: it defines the reference tokens).
      APR_RETURN_IF_ERROR(Generate(*seq, gen_hooks[i].get(), i == 0, &g, &r));
      // Perplexity of the true continuation.
      double nll = 0;
      APR_RETURN_IF_ERROR(Perplexity(*seq, ppl_hooks[i].get(), x, p, i == 0, &full_next, &nll, &r));
      if (i == 0) {
        std::string text = tok_->Decode(
            std::vector<int32_t>(g.begin(), g.begin() + std::min<size_t>(g.size(), 48)));
        std::printf("[%s] full attention's greedy continuation: \"%s...\"\n", name.c_str(),
                    absl::CEscape(text).c_str());
      }
      std::printf(
          "[%s] %-22s recall %.4f  hit %.4f  agree gen %.4f text %.4f  ppl %.3f  (%.1f ms/step)\n",
          name.c_str(), r.label().c_str(), r.stats.recall(), r.stats.hit_rate(),
          double(r.agree) / r.agree_steps, double(r.text_agree) / r.text_agree_steps,
          std::exp(nll / t), 1e3 * r.decode_seconds / r.decode_steps);
      std::fflush(stdout);
    }
    return absl::OkStatus();
  }

  // One pass-key prompt: the whole prompt but its last token is prefilled; every run then
  // decodes that token and the answer greedily (so every answer token is sparse).
  absl::Status Passkey(const std::vector<int32_t>& prompt, int64_t answer_tokens,
                       const std::string& key, const std::string& name) {
    const size_t n = runs_->size();
    std::vector<std::unique_ptr<SelectionPolicy>> pol(n);
    std::vector<std::unique_ptr<MeasuredHooks>> hooks(n);
    std::vector<SelectionStats> unused(n);
    std::vector<AttentionHooks*> all;
    for (size_t i = 0; i < n; ++i) {
      auto a = NewPolicy((*runs_)[i]);
      if (!a.ok()) return a.status();
      pol[i] = *std::move(a);
      hooks[i] = std::make_unique<MeasuredHooks>(pol[i].get(), &unused[i]);
      hooks[i]->set_enabled(false);
      all.push_back(hooks[i].get());
    }
    PrefillFanOut fan(all);
    auto seq = dec_->NewSequence(&fan);
    std::vector<float> logits;
    APR_RETURN_IF_ERROR(
        dec_->Prefill(*seq, absl::MakeConstSpan(prompt.data(), prompt.size() - 1), &logits));
    std::vector<std::string> line;
    for (size_t i = 0; i < n; ++i) {
      RunResult& r = (*runs_)[i];
      absl::StatusOr<std::unique_ptr<Sequence>> forked = dec_->Fork(*seq, hooks[i].get());
      if (!forked.ok()) return forked.status();
      std::unique_ptr<Sequence> s = std::move(*forked);
      std::vector<int32_t> out;
      int32_t next = prompt.back();
      for (int64_t k = 0; k < answer_tokens; ++k) {
        APR_RETURN_IF_ERROR(dec_->Decode(*s, next, &logits));
        next = ArgMax(logits);
        out.push_back(next);
      }
      const std::string text = tok_->Decode(out);
      const std::string digits = FirstDigits(text);
      const bool ok = digits == key;
      for (size_t d = 0; d < key.size(); ++d)
        r.passkey_digits += d < digits.size() && digits[d] == key[d];
      r.passkey_ok += ok;
      r.passkey_n += 1;
      line.push_back(absl::StrCat(
          r.label(), ok ? " ok" : absl::StrCat(" MISS (\"", absl::CEscape(text), "\")")));
    }
    std::printf("[%s] key %s: %s\n", name.c_str(), key.c_str(), absl::StrJoin(line, ", ").c_str());
    std::fflush(stdout);
    return absl::OkStatus();
  }

 private:
  // Greedy generation from the prefilled `seq` under `hooks`: the reference run appends
  // full attention's tokens to *g; the others count the steps that agree with them.
  absl::Status Generate(Sequence& seq, AttentionHooks* hooks, bool reference,
                        std::vector<int32_t>* g, RunResult* r) {
    const int64_t t = absl::GetFlag(FLAGS_decode_tokens);
    std::vector<float> logits;
    absl::StatusOr<std::unique_ptr<Sequence>> forked = dec_->Fork(seq, hooks);
    if (!forked.ok()) return forked.status();
    std::unique_ptr<Sequence> s = std::move(*forked);
    const double start = Now();
    int64_t agree = 0;
    for (int64_t k = 0; k < t; ++k) {
      APR_RETURN_IF_ERROR(dec_->Decode(*s, (*g)[k], &logits));
      const int32_t next = ArgMax(logits);
      if (reference) {
        g->push_back(next);
        ++agree;
      } else {
        agree += next == (*g)[k + 1];
      }
    }
    r->agree += agree;
    r->agree_steps += t;
    r->decode_seconds += Now() - start;
    r->decode_steps += t;
    return absl::OkStatus();
  }

  // Teacher-forced perplexity of x's continuation after position p (its negative log
  // likelihood into *nll), and next-token agreement with full attention's arg max (the
  // reference run fills *full_next).
  absl::Status Perplexity(Sequence& seq, AttentionHooks* hooks, const std::vector<int32_t>& x,
                          int64_t p, bool reference, std::vector<int32_t>* full_next, double* nll,
                          RunResult* r) {
    const int64_t t = absl::GetFlag(FLAGS_decode_tokens);
    std::vector<float> logits;
    absl::StatusOr<std::unique_ptr<Sequence>> forked = dec_->Fork(seq, hooks);
    if (!forked.ok()) return forked.status();
    std::unique_ptr<Sequence> s = std::move(*forked);
    const double start = Now();
    for (int64_t k = 0; k < t; ++k) {
      APR_RETURN_IF_ERROR(dec_->Decode(*s, x[p + k], &logits));
      *nll -= LogSoftmaxAt(logits, x[p + k + 1]);
      const int32_t next = ArgMax(logits);
      if (reference) full_next->push_back(next);
      r->text_agree += next == (*full_next)[k];
    }
    r->text_agree_steps += t;
    r->nll += *nll;
    r->nll_tokens += t;
    r->decode_seconds += Now() - start;
    r->decode_steps += t;
    return absl::OkStatus();
  }

  cpu::CpuDecoder* dec_;
  const Tokenizer* tok_;
  const PredictorCnn* cnn_;
  std::vector<RunResult>* runs_;
};

void PrintTable(const std::vector<RunResult>& runs, int64_t c) {
  const double full_ppl = runs[0].ppl();
  std::printf(
      "\n| policy | budget (tokens) | attention recall | top-k hit rate | "
      "greedy agreement (generated) | next-token agreement (held-out text) | "
      "perplexity | vs full | passkey keys (digits) |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const RunResult& r : runs) {
    const std::string budget = r.fraction == 0
                                   ? absl::StrCat("all (", c, ")")
                                   : absl::StrCat("1/", r.fraction, " (", r.budget, ")");
    const std::string passkey =
        r.passkey_n ? absl::StrFormat("%lld/%lld (%.0f%%)", static_cast<long long>(r.passkey_ok),
                                      static_cast<long long>(r.passkey_n),
                                      100.0 * r.passkey_digits / (5.0 * r.passkey_n))
                    : "-";
    std::printf("| %s | %s | %.4f | %.4f | %.2f%% | %.2f%% | %.3f | %+.2f%% | %s |\n",
                r.policy.c_str(), budget.c_str(), r.stats.recall(), r.stats.hit_rate(),
                100.0 * r.agree / std::max<int64_t>(r.agree_steps, 1),
                100.0 * r.text_agree / std::max<int64_t>(r.text_agree_steps, 1), r.ppl(),
                100.0 * (r.ppl() / full_ppl - 1), passkey.c_str());
  }
  std::printf("\nPer-layer attention recall:\n\n| policy | budget |");
  const size_t layers = runs[0].stats.layer_recall_sum.size();
  for (size_t l = 0; l < layers; ++l) std::printf(" L%zu |", l);
  std::printf(" sink+local mass |\n| --- | --- |");
  for (size_t l = 0; l <= layers; ++l) std::printf(" --- |");
  std::printf("\n");
  for (const RunResult& r : runs) {
    if (r.fraction == 0) continue;
    std::printf("| %s | 1/%lld |", r.policy.c_str(), static_cast<long long>(r.fraction));
    for (size_t l = 0; l < layers; ++l) std::printf(" %.4f |", r.stats.layer_recall(l));
    std::printf(" %.4f |\n", r.stats.fixed_mass());
  }
}

// Full attention, then every policy at every budget of --budgets; *need_cnn: a policy
// uses the predictor.
absl::StatusOr<std::vector<RunResult>> MakeRuns(int64_t c, bool* need_cnn) {
  std::vector<RunResult> runs(1);
  runs[0].policy = "full";
  runs[0].budget = c;
  for (const std::string& f : absl::GetFlag(FLAGS_budgets)) {
    int64_t frac;
    if (!absl::SimpleAtoi(f, &frac) || frac <= 0)
      return absl::InvalidArgumentError(absl::StrCat("bad --budgets entry \"", f, "\""));
    for (const std::string& p : absl::GetFlag(FLAGS_policies)) {
      if (p == "full") continue;
      RunResult r;
      r.policy = p, r.fraction = frac, r.budget = c / frac;
      *need_cnn |= p.rfind("predictor", 0) == 0;
      runs.push_back(r);
    }
  }
  return runs;
}

// --texts documents, taken round-robin over the sources.
std::vector<size_t> ChooseTexts(const std::map<std::string, std::vector<size_t>>& by_source) {
  std::vector<size_t> chosen;
  for (size_t round = 0; static_cast<int64_t>(chosen.size()) < absl::GetFlag(FLAGS_texts);
       ++round) {
    bool any = false;
    for (auto& [src, list] : by_source) {
      if (round < list.size() && static_cast<int64_t>(chosen.size()) < absl::GetFlag(FLAGS_texts)) {
        chosen.push_back(list[round]);
        any = true;
      }
    }
    if (!any) break;
  }
  return chosen;
}

// Pass-key prompts of c tokens at every depth of --passkey_depths, filler from `stream`.
absl::Status RunPasskeys(Harness& harness, const Tokenizer& tok, const std::vector<int32_t>& stream,
                         int32_t bos, int64_t c) {
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  const std::vector<int32_t> question = tok.Encode(PasskeyQuestion(), false);
  int64_t prompt_index = 0;
  for (const std::string& ds : absl::GetFlag(FLAGS_passkey_depths)) {
    double depth;
    if (!absl::SimpleAtod(ds, &depth) || depth < 0 || depth > 100)
      return absl::InvalidArgumentError(absl::StrCat("bad --passkey_depths entry \"", ds, "\""));
    for (int64_t k = 0; k < absl::GetFlag(FLAGS_passkey_keys); ++k, ++prompt_index) {
      const std::string key = std::to_string(10000 + rng() % 90000);
      const std::vector<int32_t> needle = tok.Encode(PasskeyNeedle(key), false);
      const std::vector<int32_t> answer = tok.Encode(PasskeyAnswer(key), false);
      const int64_t filler = c - 1 - needle.size() - question.size() - answer.size();
      if (filler <= 0 || static_cast<int64_t>(stream.size()) <= filler)
        return absl::InvalidArgumentError("context too short for the pass-key prompt");
      const int64_t offset = rng() % (stream.size() - filler);
      const int64_t at = std::llround(depth / 100.0 * filler);
      std::vector<int32_t> prompt = {bos};
      prompt.insert(prompt.end(), stream.begin() + offset, stream.begin() + offset + at);
      prompt.insert(prompt.end(), needle.begin(), needle.end());
      prompt.insert(prompt.end(), stream.begin() + offset + at, stream.begin() + offset + filler);
      prompt.insert(prompt.end(), question.begin(), question.end());
      const std::string name = absl::StrCat("passkey depth ", ds, "% #", k + 1);
      APR_RETURN_IF_ERROR(harness.Passkey(prompt, answer.size(), key, name));
    }
  }
  return absl::OkStatus();
}

// Every number of the runs, as JSON, to `path`.
void WriteJson(const std::string& path, const std::vector<RunResult>& runs,
               const std::vector<size_t>& chosen, const std::vector<CorpusDoc>& docs, int64_t c,
               int64_t t) {
  nlohmann::json j;
  j["context"] = c;
  j["decode_tokens"] = t;
  j["texts"] = nlohmann::json::array();
  for (size_t i : chosen) j["texts"].push_back(docs[i].id);
  for (const RunResult& r : runs) {
    nlohmann::json e;
    e["policy"] = r.policy, e["fraction"] = r.fraction, e["budget"] = r.budget;
    e["recall"] = r.stats.recall(), e["hit_rate"] = r.stats.hit_rate();
    e["sink_local_mass"] = r.stats.fixed_mass();
    e["agreement"] = double(r.agree) / std::max<int64_t>(r.agree_steps, 1);
    e["text_agreement"] = double(r.text_agree) / std::max<int64_t>(r.text_agree_steps, 1);
    e["perplexity"] = r.ppl();
    e["passkey_ok"] = r.passkey_ok, e["passkey_n"] = r.passkey_n;
    e["passkey_digits"] = r.passkey_digits;
    e["ms_per_step"] = 1e3 * r.decode_seconds / std::max<int64_t>(r.decode_steps, 1);
    std::vector<double> lr;
    for (size_t l = 0; l < r.stats.layer_recall_sum.size(); ++l)
      lr.push_back(r.stats.layer_recall(l));
    e["layer_recall"] = lr;
    j["runs"].push_back(e);
  }
  std::ofstream(path) << j.dump(1) << "\n";
}

// The predictor's weights: --predictor, or the model folder's predictor.safetensors.
absl::StatusOr<PredictorCnn> LoadCnn(const std::string& dir) {
  std::string path = absl::GetFlag(FLAGS_predictor);
  path = path.empty() ? dir + "/predictor.safetensors" : ResolveUserPath(path);
  auto loaded = PredictorCnn::Load(path);
  if (!loaded.ok()) return loaded.status();
  std::printf("predictor: %s (%lld parameters)\n", path.c_str(),
              static_cast<long long>(loaded->num_parameters()));
  return loaded;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs every selection policy on held-out texts at several budgets and prints recall, "
      "top-k hit rate, greedy agreement, perplexity and pass-key accuracy.\n"
      "  quality --heldout /tmp/corpus/heldout.jsonl [--texts 5] [--budgets 4,8,16]");
  absl::ParseCommandLine(argc, argv);
  const std::string dir = ResolveModelDir(absl::GetFlag(FLAGS_model));
  const int64_t c = absl::GetFlag(FLAGS_context), t = absl::GetFlag(FLAGS_decode_tokens);
  if (absl::GetFlag(FLAGS_heldout).empty())
    return Fail(absl::InvalidArgumentError("--heldout is required (the held-out corpus split)"));
  auto decoder = cpu::CpuDecoder::Load(dir);
  if (!decoder.ok()) return Fail(decoder.status());
  if (c > (*decoder)->config().max_position_embeddings || t <= 0 || t >= c / 2)
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--context must be <= the model's ", (*decoder)->config().max_position_embeddings,
        " and --decode_tokens in (0, context / 2)")));
  auto tok = Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tok.ok()) return Fail(tok.status());
  const std::optional<int32_t> bos = (*tok)->TokenToId("<|begin_of_text|>"),
                               eos = (*tok)->TokenToId("<|end_of_text|>");
  if (!bos || !eos)
    return Fail(absl::InvalidArgumentError("tokenizer has no <|begin_of_text|> / <|end_of_text|>"));

  bool need_cnn = false;
  auto made = MakeRuns(c, &need_cnn);
  if (!made.ok()) return Fail(made.status());
  std::vector<RunResult> runs = *std::move(made);
  std::optional<PredictorCnn> cnn;
  if (need_cnn) {
    auto loaded = LoadCnn(dir);
    if (!loaded.ok()) return Fail(loaded.status());
    cnn = *std::move(loaded);
  }
  Harness harness(decoder->get(), tok->get(), cnn ? &*cnn : nullptr, &runs);
  for (const RunResult& r : runs) {
    auto p = harness.NewPolicy(r);  // fail early on a bad name or budget
    if (!p.ok()) return Fail(p.status());
  }

  // Held-out texts: documents with at least C + 1 tokens, taken round-robin over sources.
  auto docs = ReadCorpusJsonl(ResolveUserPath(absl::GetFlag(FLAGS_heldout)));
  if (!docs.ok()) return Fail(docs.status());
  std::map<std::string, std::vector<size_t>> by_source;
  std::vector<std::vector<int32_t>> ids(docs->size());
  std::vector<int32_t> stream;  // every held-out document, for pass-key filler
  for (size_t i = 0; i < docs->size(); ++i) {
    ids[i] = (*tok)->Encode((*docs)[i].text, /*add_special_tokens=*/false);
    ids[i].insert(ids[i].begin(), *bos);
    stream.insert(stream.end(), ids[i].begin(), ids[i].end());
    stream.push_back(*eos);
    if (static_cast<int64_t>(ids[i].size()) >= c + 1) by_source[(*docs)[i].source].push_back(i);
  }
  const std::vector<size_t> chosen = ChooseTexts(by_source);
  std::printf(
      "held-out: %zu documents, %zu with >= %lld tokens; using %zu; %zu runs\n", docs->size(),
      [&] {
        size_t k = 0;
        for (auto& [s, l] : by_source) k += l.size();
        return k;
      }(),
      static_cast<long long>(c + 1), chosen.size(), runs.size());
  const double start = Now();
  for (size_t i = 0; i < chosen.size(); ++i) {
    const CorpusDoc& d = (*docs)[chosen[i]];
    std::vector<int32_t> x(ids[chosen[i]].begin(), ids[chosen[i]].begin() + c + 1);
    const std::string name = absl::StrCat("text ", i + 1, "/", chosen.size(), " ", d.id);
    if (absl::Status s = harness.Text(x, name); !s.ok()) return Fail(s);
    std::printf("[%.0f s elapsed]\n", Now() - start);
  }

  if (absl::Status s = RunPasskeys(harness, **tok, stream, *bos, c); !s.ok()) return Fail(s);
  std::printf("[%.0f s elapsed]\n", Now() - start);
  PrintTable(runs, c);

  if (const std::string out = absl::GetFlag(FLAGS_json_out); !out.empty())
    WriteJson(ResolveUserPath(out), runs, chosen, *docs, c, t);
  return 0;
}

}  // namespace
}  // namespace apr::predictor

int main(int argc, char** argv) { return apr::predictor::Main(argc, argv); }
