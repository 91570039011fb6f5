// ConnectStorageNodes' replication argument: which half of the nodes is which replica, and
// the counts it refuses (before connecting to anything).
#include "kvstore/client/connect_nodes.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apr::kvstore {
namespace {

using ::testing::HasSubstr;

TEST(ConnectNodesTest, ReplicationSplitsTheNodesInHalves) {
  EXPECT_EQ(ReplicaOfNode(0, 2, 2), 0);
  EXPECT_EQ(ReplicaOfNode(1, 2, 2), 1);
  EXPECT_EQ(ReplicaOfNode(1, 4, 2), 0);
  EXPECT_EQ(ReplicaOfNode(2, 4, 2), 1);
  EXPECT_EQ(ReplicaOfNode(3, 4, 1), 0);
  EXPECT_TRUE(CheckReplication(1, 0).ok());
  EXPECT_TRUE(CheckReplication(3, 1).ok());
  EXPECT_TRUE(CheckReplication(4, 2).ok());
}

TEST(ConnectNodesTest, AnOddCountIsRefusedNamingIt) {
  RemoteTierOptions o;
  // Nothing listens there: the count is refused before any connection is tried.
  auto t = ConnectStorageNodes({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, o, 2);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(),
              HasSubstr("KV replication 2 needs an even number of storage nodes"));
  EXPECT_THAT(t.status().message(), HasSubstr("not 3"));
  EXPECT_THAT(CheckReplication(1, 2).message(), HasSubstr("not 1"));
  EXPECT_THAT(CheckReplication(2, 3).message(), HasSubstr("KV replication 3 is not supported"));
}

}  // namespace
}  // namespace apr::kvstore
