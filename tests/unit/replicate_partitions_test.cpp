// Partitioned replicas: the topology their option describes, and the pure arithmetic by which
// several replicate processes share the partitions (replicate/partition_share.hpp).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "migrate/topology.hpp"
#include "replicate/partition_share.hpp"
#include "replicate/settings.hpp"
#include "tests/unit/default_config.hpp"

using namespace outbox;
using namespace outbox::replicate;

namespace {

using outbox::testing::parse_config;

}  // namespace

TEST(ReplicatePartitions, AReplicaHasOneQueueUnlessItsPartitionsAreSet) {
  config::Config config = parse_config(R"(
[replicas.main]
url = "postgresql://localhost/a"

[replicas.eu]
url = "postgresql://localhost/b"
partitions = 4
binding_keys = ["parking.*"]
)");
  topology::ReplicaQueue main = topology::replica_queue(config, "main");
  EXPECT_EQ(main.partitions, 1);
  EXPECT_EQ(topology::queue_names(main), std::vector<std::string>{"outbox.replica.main"});
  topology::ReplicaQueue eu = topology::replica_queue(config, "eu");
  EXPECT_EQ(eu.partitions, 4);
  EXPECT_EQ(topology::queue_names(eu), (std::vector<std::string>{"outbox.replica.eu.p0", "outbox.replica.eu.p1",
                                                                 "outbox.replica.eu.p2", "outbox.replica.eu.p3"}));
  std::vector<std::string> lines = topology::describe("outbox", {eu});
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[lines.size() - 2],
            "exchange outbox.replica.eu.hash (x-consistent-hash on header aggregate_id) bound to outbox with parking.*");
  EXPECT_EQ(lines.back(),
            "queues outbox.replica.eu.p0 .. outbox.replica.eu.p3 (classic, dead-letter exchange outbox.dead-letter, single "
            "active consumer) bound to outbox.replica.eu.hash with weight 1");
}

TEST(ReplicatePartitions, AServicesConsumerHasOneQueueUnlessItsPartitionsAreSet) {
  config::Config config = parse_config(R"(
[services.billing]
url = "postgresql://localhost/a"
binding_keys = ["bill.*"]

[services.booking]
url = "postgresql://localhost/b"
binding_keys = ["booking.*"]
partitions = 3
)");
  topology::ReplicaQueue billing = topology::consumer_queue(config, "billing");
  EXPECT_EQ(billing.partitions, 1);
  EXPECT_TRUE(billing.consumer);
  EXPECT_EQ(topology::queue_names(billing), std::vector<std::string>{"outbox.consumer.billing"});
  topology::ReplicaQueue booking = topology::consumer_queue(config, "booking");
  EXPECT_EQ(topology::queue_names(booking),
            (std::vector<std::string>{"outbox.consumer.booking.p0", "outbox.consumer.booking.p1", "outbox.consumer.booking.p2"}));
  EXPECT_EQ(topology::describe("outbox", {booking})[3],
            "exchange outbox.consumer.booking.hash (x-consistent-hash on header aggregate_id) bound to outbox with booking.*");
}

TEST(ReplicatePartitions, ZeroPartitionsIsRefusedNamingTheOption) {
  try {
    parse_config("[replicas.main]\nurl = \"postgresql://localhost/a\"\npartitions = 0\n");
    FAIL() << "partitions = 0 was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("replicas.main.partitions"), std::string::npos) << error.what();
  }
  try {
    parse_config("[services.booking]\nurl = \"postgresql://localhost/a\"\npartitions = 0\n");
    FAIL() << "services.booking.partitions = 0 was accepted";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("services.booking.partitions"), std::string::npos) << error.what();
  }
}

TEST(ReplicatePartitions, EachProcessServesThePartitionsPerProcessRoundedUp) {
  EXPECT_EQ(outbox::replicate::fair_share(4, 1), 4);
  EXPECT_EQ(outbox::replicate::fair_share(4, 2), 2);
  EXPECT_EQ(outbox::replicate::fair_share(4, 3), 2);
  EXPECT_EQ(outbox::replicate::fair_share(4, 5), 1);
  EXPECT_EQ(outbox::replicate::fair_share(4, 0), 4);  // no count yet: this process alone
}

TEST(ReplicatePartitions, AProcessOverItsShareGivesBackItsHighestPartitionsOnly) {
  std::set<int> owned{0, 1, 2, 3};
  EXPECT_FALSE(gives_back(owned, 2, 0));
  EXPECT_FALSE(gives_back(owned, 2, 1));
  EXPECT_TRUE(gives_back(owned, 2, 2));
  EXPECT_TRUE(gives_back(owned, 2, 3));
  EXPECT_FALSE(gives_back(owned, 4, 3)) << "at its share it keeps all";
  EXPECT_FALSE(gives_back({1, 3}, 2, 3));
  EXPECT_FALSE(gives_back({1, 3}, 1, 1));
  EXPECT_TRUE(gives_back({1, 3}, 1, 3));
  EXPECT_FALSE(gives_back({1}, 0, 2)) << "a partition it does not serve";
}
