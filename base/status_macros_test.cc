#include "base/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace apr {
namespace {

absl::Status Fails() { return absl::NotFoundError("gone"); }
absl::Status Succeeds() { return absl::OkStatus(); }
absl::StatusOr<std::unique_ptr<int>> Make(bool ok) {
  if (!ok) return absl::InvalidArgumentError("no");
  return std::make_unique<int>(7);
}

absl::Status ReturnIfError(bool fail, int* reached) {
  APR_RETURN_IF_ERROR(Succeeds());
  *reached = 1;
  if (fail) APR_RETURN_IF_ERROR(Fails());
  *reached = 2;
  return absl::OkStatus();
}

absl::StatusOr<int> AssignOrReturn(bool ok) {
  APR_ASSIGN_OR_RETURN(auto p, Make(ok));  // a move-only value
  APR_ASSIGN_OR_RETURN(std::unique_ptr<int> q, Make(true));  // twice in one scope
  return *p + *q;
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsTheFirstFailure) {
  int reached = 0;
  EXPECT_EQ(ReturnIfError(true, &reached).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reached, 1);
  EXPECT_TRUE(ReturnIfError(false, &reached).ok());
  EXPECT_EQ(reached, 2);
}

TEST(StatusMacrosTest, AssignOrReturnMovesTheValueOrReturnsTheStatus) {
  EXPECT_EQ(*AssignOrReturn(true), 14);
  EXPECT_EQ(AssignOrReturn(false).status().message(), "no");
}

}  // namespace
}  // namespace apr
