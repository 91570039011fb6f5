// absl::Status <-> grpc::Status. The canonical codes are numerically the same.
#ifndef APRUNTIME_KVSTORE_GRPC_STATUS_H_
#define APRUNTIME_KVSTORE_GRPC_STATUS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/support/status.h"

namespace apr::kvstore {

inline grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// `what` names the call and the peer ("AppendBlocks to storage node 127.0.0.1:4000").
inline absl::Status FromGrpc(const grpc::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(std::string(what), ": ", s.error_message()));
}

}  // namespace apr::kvstore

#endif  // APRUNTIME_KVSTORE_GRPC_STATUS_H_
