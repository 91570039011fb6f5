#include "cluster/openai/generation_call.h"

namespace apr::cluster::openai {

namespace gv1 = ::apr::generation::v1;

GenerationCall::GenerationCall(gv1::Generation::Stub& stub, const gv1::GenerateRequest& request,
                               const std::string& authorization) {
  if (!authorization.empty()) ctx_.AddMetadata("authorization", authorization);
  reader_ = stub.Generate(&ctx_, request);
  has_first_ = reader_->Read(&first_);
}

bool GenerationCall::Next(gv1::TokenChunk* chunk) {
  while (true) {
    gv1::GenerateResponse msg;
    if (has_first_ && !first_taken_) {
      first_taken_ = true;
      msg = first_;
    } else if (!has_first_ || !reader_->Read(&msg)) {
      return false;
    }
    if (msg.has_stats()) {
      stats_ = msg.stats();
    } else if (msg.has_tokens()) {
      *chunk = msg.tokens();
      return true;
    }
  }
}

grpc::Status GenerationCall::Finish() {
  gv1::GenerateResponse rest;
  while (reader_->Read(&rest)) {
    if (rest.has_stats()) stats_ = rest.stats();
  }
  return reader_->Finish();
}

int HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 400;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

}  // namespace apr::cluster::openai
