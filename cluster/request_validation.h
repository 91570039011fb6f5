// The front end's checks of a GenerateRequest and its translation into the scheduler's
// terms (cluster/generation_service.cc calls it for every Generate). Separate from the
// service so that the libFuzzer target cluster/fuzz/generate_request_fuzzer.cc links it
// without a server.
#ifndef APRUNTIME_CLUSTER_REQUEST_VALIDATION_H_
#define APRUNTIME_CLUSTER_REQUEST_VALIDATION_H_

#include "absl/status/statusor.h"
#include "cluster/config.h"
#include "rpc/generation/v1/generation.pb.h"
#include "runtime/model_config.h"
#include "runtime/scheduler.h"
#include "runtime/tokenizer/tokenizer.h"

namespace apr::cluster {

// Tokenizes a text prompt, checks token ids against the vocabulary, max_tokens and the
// prompt against frontend.limits (INVALID_ARGUMENT naming the limit), and fills in the
// defaults (max_tokens, top_p, the model's EOS ids unless ignore_eos).
absl::StatusOr<SchedulerRequest> PrepareRequest(const ::apr::generation::v1::GenerateRequest& req,
                                                const Tokenizer& tokenizer,
                                                const ModelConfig& model,
                                                const v1::FrontEnd& frontend);

}  // namespace apr::cluster

#endif  // APRUNTIME_CLUSTER_REQUEST_VALIDATION_H_
