// One streaming Generate call to the front end's own gRPC API, driven step by step so
// that the HTTP side can answer an error before it commits to a 200 stream, and cancel the
// call when its client goes away or a stop string matches (cancelling frees the
// sequence's KV blocks at once, as any cancelled gRPC stream does).
#ifndef APRUNTIME_CLUSTER_OPENAI_GENERATION_CALL_H_
#define APRUNTIME_CLUSTER_OPENAI_GENERATION_CALL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "rpc/generation/v1/generation.grpc.pb.h"

namespace apr::cluster::openai {

class GenerationCall {
 public:
  // Starts the call with `authorization` (the HTTP header, forwarded as gRPC metadata)
  // and reads its first message, so that errors the front end answers at once (auth,
  // limits, a bad prompt) are known before any byte of the response is sent.
  GenerationCall(::apr::generation::v1::Generation::Stub& stub,
                 const ::apr::generation::v1::GenerateRequest& request,
                 const std::string& authorization);
  // The next token chunk; false at the end of the stream (then Finish).
  bool Next(::apr::generation::v1::TokenChunk* chunk);
  void Cancel() { ctx_.TryCancel(); }
  // The call's status; stats() is set when the stream ended with them.
  grpc::Status Finish();
  const std::optional<::apr::generation::v1::GenerationStats>& stats() const { return stats_; }
  // True when the stream failed before sending anything.
  bool failed_early() const { return !has_first_; }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<::apr::generation::v1::GenerateResponse>> reader_;
  ::apr::generation::v1::GenerateResponse first_;
  bool has_first_ = false, first_taken_ = false;
  std::optional<::apr::generation::v1::GenerationStats> stats_;
};

// The HTTP status OpenAI clients expect for a gRPC failure.
int HttpStatusFor(grpc::StatusCode code);

}  // namespace apr::cluster::openai

#endif  // APRUNTIME_CLUSTER_OPENAI_GENERATION_CALL_H_
