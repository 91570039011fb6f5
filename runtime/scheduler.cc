#include "runtime/scheduler.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "runtime/algorithm_constants.h"

namespace apr {

struct Scheduler::Entry {
  uint64_t id = 0;
  SchedulerRequest request;
  Clock::time_point submitted, admitted, first_token;
  int64_t prefilled = 0;  // prompt tokens prefilled so far
  ScheduledResult result;
};

namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

int64_t NextPromptPartEnd(int64_t prompt_tokens, int64_t done, int64_t chunk_tokens) {
  if (chunk_tokens <= 0) return prompt_tokens;
  const int64_t end = std::min(prompt_tokens, done + chunk_tokens);
  return prompt_tokens - end < kHistoryRows ? prompt_tokens : end;
}

Scheduler::Scheduler(StepEngine& engine, SchedulerOptions options)
    : engine_(engine), options_(options) {}

Scheduler::~Scheduler() { Stop(); }

absl::StatusOr<uint64_t> Scheduler::Submit(SchedulerRequest request) {
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  if (n == 0) return absl::InvalidArgumentError("the prompt has no tokens");
  if (n > engine_.max_context()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", n, " tokens; the model's context is ", engine_.max_context()));
  }
  if (request.options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 0, got ", request.options.max_new_tokens));
  }
  APR_RETURN_IF_ERROR(ValidateSamplingParams(request.options.sampling));

  auto e = std::make_unique<Entry>();
  e->request = std::move(request);
  e->submitted = Clock::now();
  e->result.generation.prompt_tokens = n;
  std::unique_lock<std::mutex> l(mu_);
  if (stopped_) return absl::FailedPreconditionError("the scheduler is stopped");
  if (static_cast<int>(queue_.size()) >= options_.max_queue_size) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the admission queue is full (", options_.max_queue_size, " requests waiting)"));
  }
  e->id = next_id_++;
  const uint64_t id = e->id;
  queue_.push_back(std::move(e));
  work_.notify_one();
  return id;
}

void Scheduler::Cancel(uint64_t id) {
  std::unique_lock<std::mutex> l(mu_);
  cancelled_.insert(id);
  work_.notify_one();
}

bool Scheduler::HasWork() const {
  return stopped_ || !queue_.empty() || !cancelled_.empty() || running_nonempty_;
}

bool Scheduler::RunOnce() {
  std::lock_guard<std::mutex> run(run_mu_);
  std::vector<std::unique_ptr<Entry>> cancelled_queued;
  absl::flat_hash_set<uint64_t> cancel_running;
  {
    std::unique_lock<std::mutex> l(mu_);
    if (stopped_) return false;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (cancelled_.erase((*it)->id)) {
        cancelled_queued.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    cancel_running.swap(cancelled_);
    const size_t room = static_cast<size_t>(std::max(options_.max_batch_size, 1));
    while (running_.size() + admitting_.size() < room && !queue_.empty()) {
      std::unique_ptr<Entry> e = std::move(queue_.front());
      queue_.pop_front();
      e->admitted = Clock::now();
      e->result.queue_seconds = Seconds(e->admitted - e->submitted);
      admitting_.push_back(std::move(e));
    }
    // Counted as running from the moment they leave the queue: a group in the middle of a
    // long prefill is not idle to the front end's least-loaded routing (stats()).
    running_count_ = static_cast<int64_t>(running_.size() + admitting_.size());
  }
  const bool did_something =
      !cancelled_queued.empty() || !admitting_.empty() || !running_.empty();

  for (auto& e : cancelled_queued) {
    e->result.queue_seconds = Seconds(Clock::now() - e->submitted);
    e->result.generation.stop = StopReason::kCancelled;
    Finish(std::move(e));
  }
  if (!cancel_running.empty()) RetireCancelled(cancel_running);
  Admit();
  DecodeStep();

  running_count_ = static_cast<int64_t>(running_.size() + admitting_.size());
  std::unique_lock<std::mutex> l(mu_);
  running_nonempty_ = !running_.empty() || !admitting_.empty();
  return did_something;
}

void Scheduler::RetireCancelled(const absl::flat_hash_set<uint64_t>& cancelled) {
  auto retire = [&](auto& entries) {
    std::decay_t<decltype(entries)> keep;
    for (auto& e : entries) {
      if (!cancelled.contains(e->id)) {
        keep.push_back(std::move(e));
        continue;
      }
      const uint64_t id = e->id;
      engine_.Free(absl::MakeConstSpan(&id, 1));
      e->result.generation.stop = StopReason::kCancelled;
      Finish(std::move(e));
    }
    entries = std::move(keep);
  };
  retire(running_);
  retire(admitting_);
}

bool Scheduler::PrefillAllowed() const {
  return options_.max_prefill_share >= 1 || running_.empty() || prefill_debt_seconds_ <= 0;
}

void Scheduler::Admit() {
  const bool chunking = options_.prefill_chunk_tokens > 0;
  int64_t budget = options_.prefill_chunk_tokens;
  bool prefilled_any = false;
  while (!admitting_.empty()) {
    Entry& e = *admitting_.front();
    const int64_t n = static_cast<int64_t>(e.request.prompt.size());
    const int64_t part =
        NextPromptPartEnd(n, e.prefilled, options_.prefill_chunk_tokens) - e.prefilled;
    if (chunking && e.request.options.max_new_tokens != 0) {
      if (prefilled_any ? part > budget : !PrefillAllowed()) break;
      budget -= part;
      prefilled_any = true;
    }
    std::unique_ptr<Entry> owned = std::move(admitting_.front());
    admitting_.pop_front();
    if (PrefillNextPart(owned)) admitting_.push_front(std::move(owned));
    if (chunking && budget <= 0) break;
  }
}

bool Scheduler::PrefillNextPart(std::unique_ptr<Entry>& e) {
  const GenerationOptions& opts = e->request.options;
  if (opts.max_new_tokens == 0) {  // as Generate: nothing to sample
    e->result.generation.stop = StopReason::kMaxTokens;
    Finish(std::move(e));
    return false;
  }
  const absl::Span<const int32_t> prompt = e->request.prompt;
  const int64_t end =
      NextPromptPartEnd(static_cast<int64_t>(prompt.size()), e->prefilled,
                        options_.prefill_chunk_tokens);
  const PromptPart part{e->prefilled == 0, end == static_cast<int64_t>(prompt.size())};
  const Clock::time_point t0 = Clock::now();
  absl::StatusOr<int32_t> token = engine_.StartPart(
      e->id, prompt.subspan(e->prefilled, end - e->prefilled), opts.sampling, part);
  const Clock::time_point t1 = Clock::now();
  if (!running_.empty() && options_.max_prefill_share < 1) {
    prefill_debt_seconds_ += Seconds(t1 - t0);
  }
  if (!token.ok()) {
    const uint64_t id = e->id;
    engine_.Free(absl::MakeConstSpan(&id, 1));  // a part may have been prefilled
    Finish(std::move(e), token.status());
    return false;
  }
  e->prefilled = end;
  if (!part.last) return true;
  e->first_token = t1;
  e->result.generation.prefill_seconds = Seconds(e->first_token - e->admitted);
  if (Emit(*e, *token)) {
    const uint64_t id = e->id;
    engine_.Free(absl::MakeConstSpan(&id, 1));
    Finish(std::move(e));
  } else {
    running_.push_back(std::move(e));
  }
  return false;
}

void Scheduler::DecodeStep() {
  if (running_.empty()) {
    prefill_debt_seconds_ = 0;  // nobody's tokens/s to protect
    return;
  }
  std::vector<uint64_t> ids;
  std::vector<int32_t> tokens;
  for (const auto& e : running_) {
    ids.push_back(e->id);
    tokens.push_back(e->result.generation.tokens.back());
  }
  const Clock::time_point t0 = Clock::now();
  absl::StatusOr<std::vector<int32_t>> next = engine_.Step(ids, tokens);
  const double seconds = Seconds(Clock::now() - t0);
  ++steps_;
  // Decode time pays the prefill debt at the allowed share: share / (1 - share) seconds of
  // prefill per second of decode.
  const double share = std::max(options_.max_prefill_share, 0.0);
  if (share < 1) {
    prefill_debt_seconds_ =
        std::max(0.0, prefill_debt_seconds_ - seconds * share / (1 - share));
  }
  if (step_observer_) step_observer_(static_cast<int>(ids.size()), seconds);
  if (next.ok() && next->size() != ids.size()) {
    next = absl::InternalError(absl::StrCat("the engine returned ", next->size(), " tokens for ",
                                            ids.size(), " sequences"));
  }
  if (!next.ok()) {  // the step's state is unknown: every sequence in it fails
    engine_.Free(ids);
    for (auto& e : running_) Finish(std::move(e), next.status());
    running_.clear();
    return;
  }
  std::vector<uint64_t> done_ids;
  std::vector<std::unique_ptr<Entry>> keep, done;
  for (size_t i = 0; i < running_.size(); ++i) {
    if (Emit(*running_[i], (*next)[i])) {
      done_ids.push_back(ids[i]);
      done.push_back(std::move(running_[i]));
    } else {
      keep.push_back(std::move(running_[i]));
    }
  }
  running_ = std::move(keep);
  if (!done_ids.empty()) engine_.Free(done_ids);
  for (auto& e : done) Finish(std::move(e));
}

// The same checks in the same order as Generate (runtime/generation.cc), so a scheduled
// request ends exactly where the single-sequence loop would.
bool Scheduler::Emit(Entry& e, int32_t token) {
  ++tokens_;
  GenerationResult& g = e.result.generation;
  const GenerationOptions& opts = e.request.options;
  g.tokens.push_back(token);
  if (e.request.on_token && !e.request.on_token(token)) {
    g.stop = StopReason::kCancelled;
    return true;
  }
  if (std::find(opts.stop_token_ids.begin(), opts.stop_token_ids.end(), token) !=
      opts.stop_token_ids.end()) {
    g.stop = StopReason::kStopToken;
    return true;
  }
  const int64_t n = static_cast<int64_t>(g.tokens.size());
  if (n == opts.max_new_tokens) {
    g.stop = StopReason::kMaxTokens;
    return true;
  }
  // The sequence holds the prompt and every token but the last, which is not decoded yet.
  if (g.prompt_tokens + n - 1 >= engine_.max_context()) {
    g.stop = StopReason::kContextFull;
    return true;
  }
  return false;
}

void Scheduler::Finish(std::unique_ptr<Entry> e, absl::Status error) {
  if (!e->result.generation.tokens.empty()) {
    e->result.generation.decode_seconds = Seconds(Clock::now() - e->first_token);
  }
  ++finished_;
  if (!e->request.on_done) return;
  if (error.ok()) {
    e->request.on_done(std::move(e->result));
  } else {
    e->request.on_done(std::move(error));
  }
}

void Scheduler::Start() {
  std::unique_lock<std::mutex> l(mu_);
  if (thread_.joinable() || stopped_) return;
  thread_ = std::thread([this] {
    while (true) {
      {
        std::unique_lock<std::mutex> l(mu_);
        work_.wait(l, [this] { return HasWork(); });
        if (stopped_) return;
      }
      RunOnce();
    }
  });
}

void Scheduler::Stop() {
  {
    std::unique_lock<std::mutex> l(mu_);
    stopped_ = true;
    work_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> run(run_mu_);
  std::deque<std::unique_ptr<Entry>> queued;
  {
    std::unique_lock<std::mutex> l(mu_);
    queued.swap(queue_);
    cancelled_.clear();
    running_nonempty_ = false;
  }
  std::vector<uint64_t> ids;
  for (const auto& e : running_) ids.push_back(e->id);
  for (const auto& e : admitting_) ids.push_back(e->id);
  if (!ids.empty()) engine_.Free(ids);
  auto cancel_all = [this](auto& entries) {
    for (auto& e : entries) {
      e->result.generation.stop = StopReason::kCancelled;
      Finish(std::move(e));
    }
  };
  cancel_all(running_);
  cancel_all(admitting_);
  running_.clear();
  admitting_.clear();
  prefill_debt_seconds_ = 0;
  running_count_ = 0;
  for (auto& e : queued) {
    e->result.queue_seconds = Seconds(Clock::now() - e->submitted);
    e->result.generation.stop = StopReason::kCancelled;
    Finish(std::move(e));
  }
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  {
    std::unique_lock<std::mutex> l(mu_);
    s.queue_depth = static_cast<int64_t>(queue_.size());
  }
  s.running = running_count_;
  s.steps = steps_;
  s.tokens_generated = tokens_;
  s.requests_finished = finished_;
  return s;
}

}  // namespace apr
