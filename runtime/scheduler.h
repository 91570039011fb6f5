// Continuous batching: requests wait in a FIFO admission queue; between decode steps the
// scheduler admits them into the running batch (prefill plus first token) while it has
// room, advances every running sequence by one token per step, and retires sequences
// that hit a stop token, their token limit, the context length, or were cancelled.
//
// The scheduler owns the policy; the StepEngine owns the sequences and sampling. The
// front end runs one Scheduler per worker group over a remote engine; tests run it over
// a DecoderStepEngine in-process.
#ifndef APRUNTIME_RUNTIME_SCHEDULER_H_
#define APRUNTIME_RUNTIME_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "runtime/generation.h"
#include "runtime/step_engine.h"

namespace apr {

struct SchedulerOptions {
  int max_batch_size = 8;     // most sequences in one decode step
  int max_queue_size = 1024;  // Submit fails with ResourceExhausted beyond this
  // Chunked admission (docs/SCHEDULER.md): prompts are prefilled at most this many tokens
  // per iteration, between decode steps, so running streams keep generating while a long
  // prompt is admitted. 0: every admitted prompt is prefilled whole at once.
  int prefill_chunk_tokens = 0;
  // With chunking, while sequences are running, prefill takes at most this share of the
  // scheduler's time (prefill / (prefill + decode)), so running streams keep at least
  // 1 - share of their tokens/s; a chunk waits for enough decode time to pass. 1: no limit.
  double max_prefill_share = 1.0;
};

// The end of the next prompt part of a prompt of `prompt_tokens`, `done` of them
// prefilled, with parts of `chunk_tokens` (0: all of it). A tail shorter than kHistoryRows
// joins the part before it: the decoders build the predictor's history from the last rows
// of the final part, which must hold as many rows as a whole-prompt prefill would.
int64_t NextPromptPartEnd(int64_t prompt_tokens, int64_t done, int64_t chunk_tokens);

struct ScheduledResult {
  GenerationResult generation;  // tokens, stop reason, prefill and decode seconds
  double queue_seconds = 0;     // from Submit to admission
};

struct SchedulerRequest {
  std::vector<int32_t> prompt;
  GenerationOptions options;
  // Sees each token as it is sampled, on the scheduler's thread; returning false cancels
  // the request (it ends with StopReason::kCancelled, that token included). Keep it short:
  // the whole batch waits for it.
  std::function<bool(int32_t)> on_token;
  // Called exactly once, last, on the scheduler's thread (or in Stop()'s caller).
  std::function<void(absl::StatusOr<ScheduledResult>)> on_done;
};

struct SchedulerStats {
  int64_t queue_depth = 0;        // waiting for admission
  int64_t running = 0;            // in the running batch
  int64_t steps = 0;              // decode steps run
  int64_t tokens_generated = 0;   // sampled tokens, first tokens included
  int64_t requests_finished = 0;  // requests whose on_done has run
};

class Scheduler {
 public:
  Scheduler(StepEngine& engine, SchedulerOptions options);
  ~Scheduler();  // Stop()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request and returns its id. InvalidArgument for an empty prompt, one longer
  // than the context, or bad options; ResourceExhausted when the queue is full;
  // FailedPrecondition after Stop(). On error on_done is not called.
  absl::StatusOr<uint64_t> Submit(SchedulerRequest request);
  // Cancels a queued or running request; it ends with kCancelled at the next iteration.
  // Unknown or finished ids are ignored.
  void Cancel(uint64_t id);

  // One iteration: retires cancelled requests, admits queued ones while the batch has
  // room, and runs one decode step over the running batch. Returns false when there was
  // nothing to do. Call it directly (tests) or let Start() call it on a thread.
  bool RunOnce();
  // Runs iterations on a thread until Stop(); it sleeps while there is no work.
  void Start();
  // Stops the thread; queued and running requests end with kCancelled. Idempotent.
  void Stop();

  SchedulerStats stats() const;
  // Called on the scheduler's thread after each decode step (for metrics).
  void set_step_observer(std::function<void(int batch_size, double seconds)> f) {
    step_observer_ = std::move(f);
  }
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Entry;
  using Clock = std::chrono::steady_clock;

  // Records `token`; returns true when the request is finished (its stop reason set).
  bool Emit(Entry& e, int32_t token);
  void Finish(std::unique_ptr<Entry> e, absl::Status error = absl::OkStatus());
  // Retires cancelled requests of the running batch and of the prompts being admitted.
  void RetireCancelled(const absl::flat_hash_set<uint64_t>& cancelled);
  // Prefills admitted prompts, each in parts when chunking, within this iteration's token
  // budget and the prefill share; a prompt whose last part is done joins running_.
  void Admit();
  // Prefills `e`'s next part; returns false when `e` is finished (error or done).
  bool PrefillNextPart(std::unique_ptr<Entry>& e);
  // Whether the prefill share allows a part now (chunking with sequences running).
  bool PrefillAllowed() const;
  void DecodeStep();
  bool HasWork() const;  // mu_ held

  StepEngine& engine_;
  const SchedulerOptions options_;
  std::function<void(int, double)> step_observer_;

  // std::mutex rather than absl::Mutex: Debian's libabsl is not built for ThreadSanitizer,
  // which then cannot see absl::Mutex's ordering (--config=tsan would report noise).
  mutable std::mutex mu_;
  std::condition_variable work_;  // signalled when HasWork() may have become true
  std::deque<std::unique_ptr<Entry>> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> cancelled_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool running_nonempty_ ABSL_GUARDED_BY(mu_) = false;

  // Touched only by the thread that calls RunOnce (one at a time).
  std::vector<std::unique_ptr<Entry>> running_;
  std::deque<std::unique_ptr<Entry>> admitting_;  // left the queue, prompt not yet complete
  // Prefill seconds not yet paid for by decode time at the allowed share (chunking).
  double prefill_debt_seconds_ = 0;
  std::mutex run_mu_;  // serialises RunOnce against Stop()'s final drain

  std::thread thread_;
  std::atomic<int64_t> steps_{0}, tokens_{0}, finished_{0}, running_count_{0};
};

}  // namespace apr

#endif  // APRUNTIME_RUNTIME_SCHEDULER_H_
