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
//   relay_bench soak PRIMARY_URL BROKER_URL EVENTS EVERY [PACE RELAY_PID WARMUP_S]
//                                                     writes EVENTS events and reports every EVERY
//                                                     events the outbox's size, dead tuples, drain
//                                                     rate, latency p99 and the relay's CPU per event.
//                                                     PACE: max (as fast as the relay drains, the
//                                                     default), auto[:FRACTION] (300,000 events at
//                                                     max first, then FRACTION, default 0.8, of
//                                                     their drain) or events/s;
//                                                     at a set rate the first WARMUP_S seconds are
//                                                     not reported
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <limits>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/broker.hpp"
#include "bench/process.hpp"
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
  // The relay's own CPU per event over the step, and the events written but not yet received at
  // its end: at a fixed rate these say whether the relay works harder or falls behind.
  double relay_cpu_us = 0, backlog = 0;
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

// How the soak's writer paces itself. Saturated (rate 0): as fast as the relay drains, with at
// most kBacklog events between the outbox and the queue. Fixed: `rate` events/s on a schedule
// (open loop: a relay that falls behind shows as a growing backlog and p99, up to kMaxBacklog).
// Calibrated: first `calibration` events saturated, then `fraction` of the drain they measured.
struct SoakPace {
  double rate = 0;
  long calibration = 0;
  double fraction = 0;
};

SoakPace parse_pace(const std::string& text) {
  if (text == "max") return {};
  if (text.rfind("auto", 0) == 0) {
    // auto or auto:FRACTION
    double fraction = text.size() > 5 && text[4] == ':' ? std::stod(text.substr(5)) : 0.8;
    if (fraction <= 0 || fraction > 1) throw std::invalid_argument("the fraction of auto must be in (0, 1]: " + text);
    return {0, 300000, fraction};
  }
  double rate = std::stod(text);
  if (rate <= 0) throw std::invalid_argument("the rate must be max, auto[:FRACTION] or events/s above 0: " + text);
  return {rate, 0, 0};
}

// `warmup`: at a set rate (after the calibration, if any), the events of the first `warmup` are
// written and drained but not reported: the steps start with the outbox as full as it stays (a
// retention's worth of rows) and the calibration's rows gone.
int soak(const std::string& primary, const std::string& broker, long total, long every, const SoakPace& pace, long relay_pid,
         std::chrono::seconds warmup) {
  auto consumer = open(broker);
  declare_outbox_exchange(*consumer);
  consumer->declare_queue("bench.soak", outbox::amqp::QueueOptions{});
  consumer->bind_queue("bench.soak", "outbox", "bench.soak");
  consumer->set_prefetch(5000);
  consumer->consume("bench.soak", "bench");
  constexpr long kBacklog = 10000, kMaxBacklog = 200000, kBatch = 100;
  const long calibration = pace.calibration;
  const bool paced = pace.rate > 0 || pace.fraction > 0;
  bool warming = paced && warmup.count() > 0;
  // How many events in all: unknown until the warm-up ends.
  std::atomic<long> goal{warming ? std::numeric_limits<long>::max() : calibration + total};
  long counted_from = calibration;  // the events before the first step (reader thread)
  Clock::time_point warm_until = Clock::now() + warmup;
  std::atomic<long> written{0}, received{0};
  // Events/s for the writer once it is paced (0: saturated). With calibration, set by the reader.
  std::atomic<double> rate{pace.rate};
  std::atomic<bool> capped{false};
  std::thread writer([&] {
    pqxx::connection connection(primary);
    connection.prepare("insert",
                       "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload) "
                       "SELECT gen_random_uuid(), 'bench', 'agg-' || (g % 1000), g, 'bench.soak', json_build_object('i', g, "
                       "'pad', repeat('x', 100)) FROM generate_series($1::bigint, $2::bigint) g");
    auto paced_from = Clock::now();
    long paced_first = 0;
    while (written < goal) {
      bool calibrating = written < calibration || (calibration > 0 && rate.load() == 0);
      if (calibrating && written >= calibration) {  // calibrated: wait for the reader's rate
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        paced_from = Clock::now();
        paced_first = written;
        continue;
      }
      double per_second = rate.load();
      if (per_second == 0 || calibrating) {
        if (written - received > kBacklog) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          continue;
        }
      } else {
        double due = paced_first + per_second * std::chrono::duration<double>(Clock::now() - paced_from).count();
        if (written >= due) {
          std::this_thread::sleep_for(std::chrono::microseconds(500));
          continue;
        }
        if (written - received > kMaxBacklog) {  // the relay did not keep up: bounded, and said
          capped = true;
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          continue;
        }
      }
      long first = written + 1, last = std::min<long>(written + kBatch, calibrating ? calibration : goal.load());
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
  double dead_sum = 0, dead_peak = 0, relay_cpu_at_step = outbox::bench::process_cpu_seconds(relay_pid);
  long dead_samples = 0;
  // SOAK_TRACE=1: a line every second (the backlog, the slowest event received in that second).
  const bool trace = std::getenv("SOAK_TRACE") != nullptr;
  double slowest_this_second = 0;
  struct SizeSample {
    Clock::time_point at;
    double table_mb, index_mb;
  };
  std::deque<SizeSample> recent_sizes;
  // The calibration's drain is timed from its fifth to its last event: the first ones include the
  // relay's wakeup and an empty queue.
  Clock::time_point calibration_from;
  auto start_step = [&] {
    dead_sum = dead_peak = 0;
    dead_samples = 0;
    latencies_ms.clear();
    step_start = Clock::now();
    relay_cpu_at_step = outbox::bench::process_cpu_seconds(relay_pid);
  };
  while (received < goal && Clock::now() < deadline) {
    if (Clock::now() >= next_sample) {
      SoakStep sample = read_outbox_stats(stats);
      dead_sum += sample.dead;
      dead_peak = std::max(dead_peak, sample.dead);
      ++dead_samples;
      recent_sizes.push_back({Clock::now(), sample.table_mb, sample.index_mb});
      while (recent_sizes.front().at < Clock::now() - kSizeWindow) recent_sizes.pop_front();
      next_sample += std::chrono::seconds(1);
      if (trace) {
        // The wall clock, to lay beside the servers' and the relay's logs.
        long long now = now_us();
        std::time_t seconds = static_cast<std::time_t>(now / 1000000);
        std::tm utc{};
        gmtime_r(&seconds, &utc);
        std::printf("trace %02d:%02d:%02d.%03lld backlog %ld slowest %.0f ms dead %.0f table %.1f MB\n", utc.tm_hour, utc.tm_min,
                    utc.tm_sec, now / 1000 % 1000, written - received, slowest_this_second, sample.dead, sample.table_mb);
        slowest_this_second = 0;
      }
    }
    uint64_t last = 0;
    consumer->poll(
        [&](outbox::amqp::Event& event) {
          if (event.kind != outbox::amqp::Event::Kind::delivery) return;
          last = event.delivery_tag;
          long count = ++received;
          if (count <= calibration) {
            if (count == calibration / 5) calibration_from = Clock::now();
            if (count < calibration) return;
            double drain =
                (calibration - calibration / 5) / std::chrono::duration<double>(Clock::now() - calibration_from).count();
            rate = pace.fraction * drain;
            std::printf("calibration: %ld events saturated drained at %.0f events/s; writing at %.0f events/s (%.0f%%)\n",
                        calibration, drain, rate.load(), 100 * pace.fraction);
            std::fflush(stdout);
            warm_until = Clock::now() + warmup;
            start_step();
            return;
          }
          if (warming) {
            if (Clock::now() < warm_until) return;
            warming = false;
            counted_from = count - 1;
            goal = counted_from + total;
            std::printf("warm-up: %ld events over %lld s at the set rate, not reported\n", counted_from - calibration,
                        static_cast<long long>(warmup.count()));
            std::fflush(stdout);
            start_step();
          }
          latencies_ms.push_back((now_us() - std::get<long long>(event.message->headers.at("created_at"))) / 1000.0);
          slowest_this_second = std::max(slowest_this_second, latencies_ms.back());
          if ((count - counted_from) % every != 0) return;
          SoakStep step = read_outbox_stats(stats);
          step.drain = every / std::chrono::duration<double>(Clock::now() - step_start).count();
          step.dead_mean = dead_samples ? dead_sum / dead_samples : step.dead;
          step.dead_peak = std::max(dead_peak, step.dead);
          step.relay_cpu_us = relay_pid ? (outbox::bench::process_cpu_seconds(relay_pid) - relay_cpu_at_step) / every * 1e6 : 0;
          step.backlog = written - count;
          recent_sizes.push_back({Clock::now(), step.table_mb, step.index_mb});
          for (const SizeSample& size : recent_sizes) {
            step.table_mean += size.table_mb / recent_sizes.size();
            step.index_mean += size.index_mb / recent_sizes.size();
          }
          std::sort(latencies_ms.begin(), latencies_ms.end());
          step.p99 = latencies_ms[static_cast<size_t>(0.99 * (latencies_ms.size() - 1))];
          steps.push_back(step);
          start_step();
          std::printf(
              "%ld: table %.1f MB (last 30 s %.1f), indexes %.1f MB (last 30 s %.1f), dead tuples %.0f (step mean %.0f, "
              "peak %.0f), drain %.0f events/s, p99 %.1f ms, relay CPU %.1f us/event, backlog %.0f (HOT updates %.0f%%)\n",
              count - counted_from, step.table_mb, step.table_mean, step.index_mb, step.index_mean, step.dead, step.dead_mean,
              step.dead_peak, step.drain, step.p99, step.relay_cpu_us, step.backlog, step.hot_percent);
          std::fflush(stdout);
        },
        std::chrono::milliseconds(100));
    if (last) consumer->ack(last, true);
  }
  writer.join();
  if (capped) std::printf("the relay fell behind the rate: the writer waited at a backlog of %ld events\n", kMaxBacklog);
  if (steps.size() < 2) return received == goal ? 0 : 1;
  // Drift: the largest distance of any later step from the first, as a share of the first.
  auto drift = [&](double SoakStep::*field) {
    double worst = 0;
    for (const SoakStep& step : steps)
      if (steps[0].*field > 0) worst = std::max(worst, std::fabs(step.*field - steps[0].*field) / steps[0].*field);
    return 100 * worst;
  };
  std::printf(
      "drift against the first step (max over the steps): table %.0f%% (last 30 s %.0f%%), indexes %.0f%% (last 30 s "
      "%.0f%%), dead tuples %.0f%% (step mean %.0f%%, step peak %.0f%%), drain %.0f%%, p99 %.0f%%, relay CPU %.0f%%\n",
      drift(&SoakStep::table_mb), drift(&SoakStep::table_mean), drift(&SoakStep::index_mb), drift(&SoakStep::index_mean),
      drift(&SoakStep::dead), drift(&SoakStep::dead_mean), drift(&SoakStep::dead_peak), drift(&SoakStep::drain),
      drift(&SoakStep::p99), drift(&SoakStep::relay_cpu_us));
  return received == goal && !capped ? 0 : 1;
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
    if ((args.size() == 5 || args.size() == 8) && args[0] == "soak")
      return soak(args[1], args[2], std::stol(args[3]), std::stol(args[4]), parse_pace(args.size() == 8 ? args[5] : "max"),
                  args.size() == 8 ? std::stol(args[6]) : 0, std::chrono::seconds(args.size() == 8 ? std::stol(args[7]) : 0));
    if (args.size() == 5 && args[0] == "latency") return latency(args[1], args[2], std::stoi(args[3]), std::stoi(args[4]));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "relay_bench: %s\n", error.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: relay_bench ceiling BROKER_URL QUEUE COUNT SIZE | queue BROKER_URL QUEUE BINDING_KEY [EXCHANGE] | depth "
               "BROKER_URL QUEUE | wait-marked PRIMARY_URL | wait-depth BROKER_URL QUEUE COUNT | latency PRIMARY_URL BROKER_URL "
               "RATE SECONDS | soak PRIMARY_URL BROKER_URL EVENTS EVERY [PACE RELAY_PID WARMUP_S]\n");
  return 64;
}
