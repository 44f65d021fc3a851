// The pipeline on a 3-node RabbitMQ cluster (scripts/servers start rabbitmq-cluster): broker.url
// lists the three nodes and every queue outbox declares is a quorum queue (broker.queue_type and
// replicas.main.queue_type set in the test's config: RabbitMQ 3.10, Debian's, has no
// default_queue_type for a vhost, and the config is where an operator chooses it too). Under a steady write load (a writer thread
// updating a set of parking slots, each update a new version of its aggregate), one node fails at a time: the node the relay is
// connected to is stopped; the node that leads the replica's queue is killed (SIGKILL); all three are restarted in turn. After
// each: both daemons are on a node that is up, by themselves; work goes on while the node is down; the replica converges (outbox
// verify); nothing is lost; no event was applied after a newer one of its aggregate (none "not effective" in
// outbox_applied_events).
//
// CTest: `cluster` runs every test (label cluster, not in the default CI run: about 6 minutes);
// `cluster.node_failure` runs the first one, label integration, so CI sees a node fail.
#include "tests/integration/support/cluster.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "examples/parking/parking.hpp"
#include "tests/integration/support/harness.hpp"

using namespace outbox::testing;
namespace parking = outbox::parking;

namespace {

const std::string kReplicaQueue = "outbox.replica.main";
const std::string kRelayConnection = "outbox-relay";
const std::string kReplicateConnection = "outbox-replicate main";

// Updates `slots` parking slots round-robin, one transaction per update, until stopped; each
// commit it saw succeed is counted. The primary never fails here, so nothing is in doubt.
class SteadyWriter {
 public:
  explicit SteadyWriter(int slots) : slots_(slots) {
    thread_ = std::thread([this] { run(); });
  }
  ~SteadyWriter() { stop(); }
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  long long committed() const { return committed_; }
  std::string problem() const { return problem_; }

 private:
  void run() {
    try {
      auto connection = connect(servers().primary_url);
      std::vector<std::string> uuids;
      for (int i = 0; i < slots_; ++i) {
        pqxx::work tx(connection);
        uuids.push_back(parking::create(tx, "cluster-" + std::to_string(i), "available").uuid);
        tx.commit();
        ++committed_;
      }
      for (long long step = 0; !stopping_; ++step) {
        pqxx::work tx(connection);
        parking::update(tx, uuids[step % slots_], std::nullopt, std::string(step % 2 ? "blocked" : "reserved"));
        tx.commit();
        ++committed_;
        std::this_thread::sleep_for(5ms);  // steady, not flat out: the point is faults under load
      }
    } catch (const std::exception& error) {
      problem_ = error.what();
    }
  }
  int slots_;
  std::atomic<bool> stopping_{false};
  std::atomic<long long> committed_{0};
  std::string problem_;
  std::thread thread_;
};

long long count(const std::string& url, const std::string& sql) { return std::stoll(scalar(url, sql)); }

long long applied() {
  return count(servers().replica_url, "SELECT count(*) FROM outbox_applied_events WHERE aggregate_type = 'parking_slot'");
}

class RabbitMQCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    const Cluster& nodes = start_cluster();
    ASSERT_FALSE(nodes.broker_url.empty());
    ASSERT_TRUE(await_cluster_whole()) << "the cluster is not whole before the test";
    reset_databases();
    env_ = {{"OUTBOX_BROKER_URL", nodes.broker_url},
            {"OUTBOX_CONFIG",
             write_file("cluster.toml", "[broker]\nqueue_type = \"quorum\"\n[replicas.main]\nqueue_type = \"quorum\"\n")}};
    RunResult migrated = run_outbox({"migrate"}, env_);
    ASSERT_EQ(migrated.exit_code, 0) << migrated;
    relay_ = std::make_unique<Daemon>(std::vector<std::string>{"relay", "--set", "relay.on_publish=mark", "--set",
                                                               "relay.retention=30d", "--set", "relay.max_backoff=1s", "--set",
                                                               "relay.confirm_timeout=5s", "--set", "relay.poll_interval=200ms"},
                                      env_);
    replicate_ = std::make_unique<Daemon>(
        std::vector<std::string>{"replicate", "--set", "replicate.max_backoff=1s", "--set", "replicate.record_event_ids=true"},
        env_);
    writer_ = std::make_unique<SteadyWriter>(20);
    ASSERT_TRUE(eventually([] { return applied() >= 100; }, 120s)) << "the pipeline did not start: " << applied();
  }

  void TearDown() override {
    writer_.reset();
    relay_.reset();
    replicate_.reset();
  }

  // Work goes on: `more` further events applied while the fault lasts.
  void expect_progress(const std::string& during, long long more = 200) {
    long long before = applied();
    EXPECT_TRUE(eventually([&] { return applied() >= before + more; }, 120s))
        << "no progress while " << during << ": " << before << " -> " << applied() << " applied";
  }

  // Both daemons are connected to a node other than `down` (they moved there by themselves).
  void expect_daemons_not_on(int down) {
    for (const std::string& name : {kRelayConnection, kReplicateConnection}) {
      std::optional<int> node;
      EXPECT_TRUE(eventually(
          [&] {
            node = node_of_connection(name);
            return node && *node != down;
          },
          120s))
          << name << " is not connected to a node other than rabbitmq-" << down;
    }
  }

  // The writer stops; the replica converges; nothing lost, nothing applied out of order.
  void expect_converged() {
    writer_->stop();
    EXPECT_EQ(writer_->problem(), "");
    long long written = writer_->committed();
    EXPECT_TRUE(eventually([&] { return applied() >= written; }, 180s)) << applied() << " of " << written << " applied";
    EXPECT_EQ(count(servers().primary_url, "SELECT count(*) FROM outbox WHERE aggregate_type = 'parking_slot'"), written);
    EXPECT_EQ(applied(), written);
    EXPECT_EQ(count(servers().replica_url,
                    "SELECT count(*) FROM outbox_applied_events WHERE aggregate_type = 'parking_slot' AND NOT effective"),
              0)
        << "an event was applied after a newer one of its aggregate";
    RunResult verify = run_outbox({"verify"}, env_);
    EXPECT_EQ(verify.exit_code, 0) << verify;
    EXPECT_TRUE(relay_->running()) << relay_->log();
    EXPECT_TRUE(replicate_->running()) << replicate_->log();
  }

  std::map<std::string, std::string> env_;
  std::unique_ptr<Daemon> relay_, replicate_;
  std::unique_ptr<SteadyWriter> writer_;
};

TEST_F(RabbitMQCluster, StoppingTheNodeTheRelayUsesLosesNothingAndBothDaemonsMoveOn) {
  std::optional<int> node;
  ASSERT_TRUE(eventually([&] { return (node = node_of_connection(kRelayConnection)).has_value(); }, 120s));
  ASSERT_TRUE(stop_node(*node));
  expect_daemons_not_on(*node);
  expect_progress("rabbitmq-" + std::to_string(*node) + " is stopped");
  ASSERT_TRUE(start_node(*node));
  ASSERT_TRUE(await_cluster_whole());
  expect_converged();
}

TEST_F(RabbitMQCluster, KillingTheNodeThatLeadsTheReplicaQueueLosesNothingAndBothDaemonsMoveOn) {
  std::optional<int> leader;
  ASSERT_TRUE(eventually([&] { return (leader = leader_of_queue(kReplicaQueue)).has_value(); }, 120s));
  ASSERT_TRUE(kill_node(*leader));
  expect_daemons_not_on(*leader);
  expect_progress("rabbitmq-" + std::to_string(*leader) + ", the queue's leader, is killed");
  EXPECT_TRUE(eventually([&] { return leader_of_queue(kReplicaQueue).value_or(*leader) != *leader; }, 120s))
      << "no new leader for " << kReplicaQueue;
  ASSERT_TRUE(start_node(*leader));
  ASSERT_TRUE(await_cluster_whole());
  expect_converged();
}

TEST_F(RabbitMQCluster, ARollingRestartOfAllThreeNodesLosesNothingAndKeepsOrder) {
  for (int node = 1; node <= 3; ++node) {
    ASSERT_TRUE(stop_node(node));
    expect_daemons_not_on(node);
    expect_progress("rabbitmq-" + std::to_string(node) + " is restarting", 100);
    ASSERT_TRUE(start_node(node));
    ASSERT_TRUE(await_cluster_whole()) << "after restarting rabbitmq-" << node;
  }
  expect_converged();
}

}  // namespace
