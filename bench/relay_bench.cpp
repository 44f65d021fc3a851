// Load generator and probes for the relay benchmarks (bench/relay-drain, bench/relay-latency).
//   relay_bench ceiling BROKER_URL QUEUE COUNT SIZE   plain rabbitmq-c publisher with batched confirms:
//                                                     the broker's ceiling for the same messages
//   relay_bench queue BROKER_URL QUEUE KEY [EXCHANGE] a durable queue bound to the outbox exchange
//                                                     (or EXCHANGE: outbox.packed for packs)
//   relay_bench wait-marked PRIMARY_URL               waits until no outbox row is unpublished
//   relay_bench depth BROKER_URL QUEUE                messages ready in a queue
//   relay_bench latency PRIMARY_URL BROKER_URL RATE SECONDS
//                                                     inserts RATE events/s for SECONDS and prints the
//                                                     commit-to-queue latency p50, p99 and max
//   relay_bench soak PRIMARY_URL BROKER_URL EVENTS EVERY
//                                                     writes EVENTS events as fast as the relay drains
//                                                     them and reports every EVERY events the outbox's
//                                                     size, dead tuples, drain rate and latency p99
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "bench/broker.hpp"
#include "core/amqp.hpp"
#include "migrate/topology.hpp"

using Clock = std::chrono::steady_clock;

namespace {

long long now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::unique_ptr<outbox::amqp::Connection> open(const std::string& url) { return outbox::bench::open_broker(url, "outbox-bench"); }

// The exchanges exactly as the relay declares them.
void declare_outbox_exchange(outbox::amqp::Connection& connection) { outbox::topology::declare_exchange(connection, "outbox"); }

int ceiling(const std::string& url, const std::string& queue, long count, size_t size) {
  // The same messages the relay sends: same exchange (topic, alternate exchange), properties,
  // headers, mandatory flag and persistence, so the only difference is the relay's own work.
  auto connection = open(url);
  declare_outbox_exchange(*connection);
  connection->declare_queue(queue, outbox::amqp::QueueOptions{});
  connection->bind_queue(queue, "outbox", "ceiling.#");
  connection->enable_confirms();
  outbox::amqp::OutgoingMessage message;
  message.exchange = "outbox";
  message.routing_key = "ceiling.created";
  message.type = "ceiling.created";
  message.body = std::string(size, 'x');
  message.timestamp_seconds = now_us() / 1000000;
  uint64_t confirmed = 0;
  const long kWindow = std::getenv("CEILING_WINDOW") ? std::stol(std::getenv("CEILING_WINDOW")) : 6000;
  auto start = Clock::now();
  for (long sent = 0; sent < count;) {
    long batch = std::min(kWindow / 4, count - sent);
    for (long i = 0; i < batch; ++i) {
      message.message_id = std::to_string(sent + i);
      message.headers = {{"aggregate_type", std::string("bench")},
                         {"aggregate_id", "agg-" + std::to_string((sent + i) % 1000)},
                         {"aggregate_version", sent + i},
                         {"created_at", now_us()},
                         {"outbox_position", sent + i},
                         {"outbox_table", std::string("public.outbox")}};
      connection->publish(message);
    }
    sent += batch;
    // Keep at most kWindow unconfirmed, like a pipelined publisher.
    while (static_cast<long>(connection->published_count() - confirmed) > (sent == count ? 0 : kWindow))
      connection->poll(
          [&](outbox::amqp::Event& event) {
            if (event.kind == outbox::amqp::Event::Kind::ack) confirmed = std::max(confirmed, event.delivery_tag);
          },
          std::chrono::milliseconds(100));
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("%.0f\n", count / seconds);
  return 0;
}

int latency(const std::string& primary, const std::string& broker, int rate, int seconds) {
  auto consumer = open(broker);
  declare_outbox_exchange(*consumer);
  consumer->declare_queue("bench.latency", outbox::amqp::QueueOptions{});
  consumer->bind_queue("bench.latency", "outbox", "bench.latency");
  consumer->set_prefetch(1000);
  consumer->consume("bench.latency", "bench");
  long total = static_cast<long>(rate) * seconds;
  std::vector<double> latencies_ms;
  latencies_ms.reserve(total);
  std::thread writer([&] {
    pqxx::connection connection(primary);
    connection.prepare("insert",
                       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
                       "VALUES (gen_random_uuid(), 'bench', $1, $2, 'bench.latency', json_build_object('i', $2::bigint, 'pad', "
                       "repeat('x', 100)))");
    auto start = Clock::now();
    for (long i = 0; i < total; ++i) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(i * 1000000 / rate));
      pqxx::work tx(connection);
      tx.exec_prepared("insert", "agg-" + std::to_string(i % 100), i + 1);
      tx.commit();
    }
  });
  auto deadline = Clock::now() + std::chrono::seconds(seconds + 60);
  while (static_cast<long>(latencies_ms.size()) < total && Clock::now() < deadline) {
    uint64_t last = 0;
    consumer->poll(
        [&](outbox::amqp::Event& event) {
          if (event.kind != outbox::amqp::Event::Kind::delivery) return;
          long long created = std::get<long long>(event.message->headers.at("created_at"));
          latencies_ms.push_back((now_us() - created) / 1000.0);
          last = event.delivery_tag;
        },
        std::chrono::milliseconds(100));
    if (last) consumer->ack(last, true);
  }
  writer.join();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto at = [&](double q) {
    return latencies_ms.empty() ? 0.0
                                : latencies_ms[std::min(latencies_ms.size() - 1, static_cast<size_t>(q * latencies_ms.size()))];
  };
  std::printf("events %zu/%ld p50 %.2f ms p99 %.2f ms max %.2f ms\n", latencies_ms.size(), total, at(0.5), at(0.99),
              latencies_ms.empty() ? 0.0 : latencies_ms.back());
  return static_cast<long>(latencies_ms.size()) == total ? 0 : 1;
}

// What bench/soak reports at each step: the outbox's size over all its partitions (a plain table is
// its own one leaf), its dead tuples, the drain rate and the commit-to-queue p99 of the step.
struct SoakStep {
  double table_mb = 0, index_mb = 0, dead = 0, drain = 0, p99 = 0, hot_percent = 0;
  // Dead tuples sampled every second over the step: autovacuum's sawtooth makes the one reading
  // at the step's end anything between its trough and its peak, so the step's mean and peak are
  // what say whether they accumulate.
  double dead_mean = 0, dead_peak = 0;
  // The sizes sampled the same way, averaged over the step's last kSizeWindow: retention drops a
  // whole partition at a time and the relay vacuums every 10 s, so the size has a sawtooth (a
  // partition's worth, about a tenth of the outbox with bench/soak's defaults, every 6 s or so),
  // and the reading at the step's end falls anywhere on it. Not over the whole step: the first
  // one starts from an empty outbox, which fills for a retention (60 s) before it is steady.
  double table_mean = 0, index_mean = 0;
};

constexpr auto kSizeWindow = std::chrono::seconds(30);

SoakStep read_outbox_stats(pqxx::connection& connection) {
  pqxx::nontransaction tx(connection);
  pqxx::row row = tx.exec1(
      "SELECT coalesce(sum(pg_table_size(t.relid)), 0) / 1048576.0, coalesce(sum(pg_indexes_size(t.relid)), 0) / 1048576.0, "
      "coalesce(sum(s.n_dead_tup), 0), coalesce(100.0 * sum(s.n_tup_hot_upd) / nullif(sum(s.n_tup_upd), 0), 0) "
      "FROM (SELECT relid FROM pg_partition_tree('outbox') WHERE isleaf UNION ALL SELECT 'outbox'::regclass FROM pg_class "
      "WHERE oid = 'outbox'::regclass AND relkind = 'r') t LEFT JOIN pg_stat_user_tables s ON s.relid = t.relid");
  return SoakStep{row[0].as<double>(), row[1].as<double>(), row[2].as<double>(), 0, 0, row[3].as<double>()};
}

int soak(const std::string& primary, const std::string& broker, long total, long every) {
  auto consumer = open(broker);
  declare_outbox_exchange(*consumer);
  consumer->declare_queue("bench.soak", outbox::amqp::QueueOptions{});
  consumer->bind_queue("bench.soak", "outbox", "bench.soak");
  consumer->set_prefetch(5000);
  consumer->consume("bench.soak", "bench");
  // The writer keeps at most kBacklog events between the outbox and the queue: it writes as fast
  // as the relay drains, the highest rate the pipeline sustains, and the backlog stays bounded.
  constexpr long kBacklog = 10000, kBatch = 100;
  std::atomic<long> written{0}, received{0};
  std::thread writer([&] {
    pqxx::connection connection(primary);
    connection.prepare("insert",
                       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
                       "SELECT gen_random_uuid(), 'bench', 'agg-' || (g % 1000), g, 'bench.soak', json_build_object('i', g, "
                       "'pad', repeat('x', 100)) FROM generate_series($1::bigint, $2::bigint) g");
    while (written < total) {
      if (written - received > kBacklog) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      long first = written + 1, last = std::min<long>(written + kBatch, total);
      pqxx::work tx(connection);
      tx.exec_prepared("insert", first, last);
      tx.commit();
      written = last;
    }
  });
  pqxx::connection stats(primary);
  std::vector<SoakStep> steps;
  std::vector<double> latencies_ms;
  auto step_start = Clock::now(), deadline = Clock::now() + std::chrono::hours(6);
  auto next_sample = Clock::now();
  double dead_sum = 0, dead_peak = 0;
  long dead_samples = 0;
  struct SizeSample {
    Clock::time_point at;
    double table_mb, index_mb;
  };
  std::deque<SizeSample> recent_sizes;
  while (received < total && Clock::now() < deadline) {
    if (Clock::now() >= next_sample) {
      SoakStep sample = read_outbox_stats(stats);
      dead_sum += sample.dead;
      dead_peak = std::max(dead_peak, sample.dead);
      ++dead_samples;
      recent_sizes.push_back({Clock::now(), sample.table_mb, sample.index_mb});
      while (recent_sizes.front().at < Clock::now() - kSizeWindow) recent_sizes.pop_front();
      next_sample += std::chrono::seconds(1);
    }
    uint64_t last = 0;
    consumer->poll(
        [&](outbox::amqp::Event& event) {
          if (event.kind != outbox::amqp::Event::Kind::delivery) return;
          latencies_ms.push_back((now_us() - std::get<long long>(event.message->headers.at("created_at"))) / 1000.0);
          last = event.delivery_tag;
          if (++received % every != 0) return;
          SoakStep step = read_outbox_stats(stats);
          step.drain = every / std::chrono::duration<double>(Clock::now() - step_start).count();
          step.dead_mean = dead_samples ? dead_sum / dead_samples : step.dead;
          step.dead_peak = std::max(dead_peak, step.dead);
          dead_sum = dead_peak = 0;
          dead_samples = 0;
          recent_sizes.push_back({Clock::now(), step.table_mb, step.index_mb});
          for (const SizeSample& size : recent_sizes) {
            step.table_mean += size.table_mb / recent_sizes.size();
            step.index_mean += size.index_mb / recent_sizes.size();
          }
          std::sort(latencies_ms.begin(), latencies_ms.end());
          step.p99 = latencies_ms[static_cast<size_t>(0.99 * (latencies_ms.size() - 1))];
          latencies_ms.clear();
          step_start = Clock::now();
          steps.push_back(step);
          std::printf(
              "%ld: table %.1f MB (last 30 s %.1f), indexes %.1f MB (last 30 s %.1f), dead tuples %.0f (step mean %.0f, "
              "peak %.0f), drain %.0f events/s, p99 %.1f ms (HOT updates %.0f%%)\n",
              received.load(), step.table_mb, step.table_mean, step.index_mb, step.index_mean, step.dead, step.dead_mean,
              step.dead_peak, step.drain, step.p99, step.hot_percent);
          std::fflush(stdout);
        },
        std::chrono::milliseconds(100));
    if (last) consumer->ack(last, true);
  }
  writer.join();
  if (steps.size() < 2) return received == total ? 0 : 1;
  // Drift: the largest distance of any later step from the first, as a share of the first.
  auto drift = [&](double SoakStep::*field) {
    double worst = 0;
    for (const SoakStep& step : steps)
      if (steps[0].*field > 0) worst = std::max(worst, std::fabs(step.*field - steps[0].*field) / steps[0].*field);
    return 100 * worst;
  };
  std::printf(
      "drift against the first step (max over the steps): table %.0f%% (last 30 s %.0f%%), indexes %.0f%% (last 30 s "
      "%.0f%%), dead tuples %.0f%% (step mean %.0f%%, step peak %.0f%%), drain %.0f%%, p99 %.0f%%\n",
      drift(&SoakStep::table_mb), drift(&SoakStep::table_mean), drift(&SoakStep::index_mb), drift(&SoakStep::index_mean),
      drift(&SoakStep::dead), drift(&SoakStep::dead_mean), drift(&SoakStep::dead_peak), drift(&SoakStep::drain),
      drift(&SoakStep::p99));
  return received == total ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 5 && args[0] == "ceiling") return ceiling(args[1], args[2], std::stol(args[3]), std::stoul(args[4]));
    if ((args.size() == 4 || args.size() == 5) && args[0] == "queue") {
      auto connection = open(args[1]);
      std::string exchange = args.size() == 5 ? args[4] : "outbox";
      outbox::topology::declare_exchange(*connection, exchange);
      connection->declare_queue(args[2], outbox::amqp::QueueOptions{});
      connection->bind_queue(args[2], exchange, args[3]);
      return 0;
    }
    if (args.size() == 2 && args[0] == "wait-marked") {
      // A pack holds many events, so a queue's depth does not count them: the end is the last
      // row marked, which the relay does right after its confirm (so this end is a little late).
      pqxx::connection connection(args[1]);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
      while (pqxx::nontransaction(connection)
                 .exec("SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)")[0][0]
                 .as<bool>()) {
        if (std::chrono::steady_clock::now() > deadline) return 1;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      return 0;
    }
    if (args.size() == 3 && args[0] == "depth") {
      std::printf("%u\n", open(args[1])->inspect_queue(args[2]).first);
      return 0;
    }
    if (args.size() == 4 && args[0] == "wait-depth") {
      // One connection polled every 5 ms: a probe that costs the machine nothing next to the relay
      // (a psql per probe would fork a backend and authenticate 50 times a second).
      auto connection = open(args[1]);
      uint32_t wanted = static_cast<uint32_t>(std::stoul(args[3]));
      auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
      while (connection->inspect_queue(args[2]).first < wanted) {
        if (std::chrono::steady_clock::now() > deadline) return 1;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      return 0;
    }
    if (args.size() == 5 && args[0] == "soak") return soak(args[1], args[2], std::stol(args[3]), std::stol(args[4]));
    if (args.size() == 5 && args[0] == "latency") return latency(args[1], args[2], std::stoi(args[3]), std::stoi(args[4]));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "relay_bench: %s\n", error.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: relay_bench ceiling BROKER_URL QUEUE COUNT SIZE | queue BROKER_URL QUEUE BINDING_KEY [EXCHANGE] | depth "
               "BROKER_URL QUEUE | wait-marked PRIMARY_URL | wait-depth BROKER_URL QUEUE COUNT | latency PRIMARY_URL BROKER_URL "
               "RATE SECONDS | soak PRIMARY_URL BROKER_URL EVENTS EVERY\n");
  return 64;
}
