// Early returns on error, for functions that return absl::Status or absl::StatusOr<T>:
// the project's one definition (Abseil's open-source release has none).
//
//   APR_RETURN_IF_ERROR(file.Write(bytes));
//   APR_ASSIGN_OR_RETURN(auto config, LoadModelConfig(path));
#ifndef APRUNTIME_BASE_STATUS_MACROS_H_
#define APRUNTIME_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns the status of `expr` (an absl::Status) from the enclosing function unless OK.
#define APR_RETURN_IF_ERROR(expr)             \
  do {                                        \
    if (absl::Status _s = (expr); !_s.ok()) { \
      return _s;                              \
    }                                         \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else moves its
// value into `lhs` (a declaration such as `auto x` or an existing variable).
#define APR_ASSIGN_OR_RETURN(lhs, rexpr) \
  APR_ASSIGN_OR_RETURN_IMPL_(APR_STATUS_MACROS_CONCAT_(_apr_statusor_, __LINE__), lhs, rexpr)

#define APR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#define APR_STATUS_MACROS_CONCAT_INNER_(a, b) a##b
#define APR_STATUS_MACROS_CONCAT_(a, b) APR_STATUS_MACROS_CONCAT_INNER_(a, b)

#endif  // APRUNTIME_BASE_STATUS_MACROS_H_
