// Host regions: a populated region larger than the memory available is refused before
// anything is mapped, naming both sizes.
#include "kvstore/host_memory.h"

#include <cstdint>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::kvstore {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(CheckHostMemoryFits, RefusesMoreThanAvailableNamingBothSizes) {
  EXPECT_TRUE(CheckHostMemoryFits(96 * kGiB, 126 * kGiB).ok());
  EXPECT_TRUE(CheckHostMemoryFits(126 * kGiB, 126 * kGiB).ok());
  EXPECT_TRUE(CheckHostMemoryFits(1000 * kGiB, -1).ok()) << "unknown: not refused";
  const absl::Status s = CheckHostMemoryFits(128 * kGiB, 120 * kGiB);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("128.0 GiB of host memory asked for"));
  EXPECT_THAT(s.message(), HasSubstr("120.0 GiB available"));
}

TEST(HostRegion, PopulatingMoreThanTheHostHasIsRefusedBeforeMapping) {
  const int64_t available = HostMemAvailableBytes();
  ASSERT_GT(available, 0) << "/proc/meminfo has no MemAvailable";
  // Were the check missing, the kernel's overcommit heuristic (mode 0) would still refuse
  // a mapping of 4x the available memory, so this fails rather than waking the OOM killer;
  // with overcommit always on (mode 1) it could populate, so it is not tried there.
  int overcommit = 0;
  std::ifstream("/proc/sys/vm/overcommit_memory") >> overcommit;
  if (overcommit == 1) GTEST_SKIP() << "vm.overcommit_memory = 1";
  auto r = HostRegion::Allocate(static_cast<size_t>(available) * 4, /*populate=*/true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("MemAvailable"));
  auto small = HostRegion::Allocate(1 << 20, /*populate=*/true);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->size(), size_t{1} << 20);
}

}  // namespace
}  // namespace apr::kvstore
