// Load generator and probes for the replicate benchmarks (bench/replicate-apply, bench/end-to-end).
//   replicate_bench fill BROKER_URL N ROWS QUEUE...  publishes N parking events (70% create, 30% update)
//                                                    with pipelined confirms into the outbox exchange,
//                                                    writes each payload as a line of the file ROWS and
//                                                    waits until each QUEUE holds N; prints the slots
//   replicate_bench fill --pack P BROKER_URL N ROWS QUEUE...  the same events as a packing relay
//                                                    publishes them (relay.pack = P): packs of up to P
//                                                    events of one relay partition (16, by aggregate)
//                                                    to the exchange outbox.packed; QUEUEs (not a
//                                                    replica's) are bound to that; waits until each
//                                                    holds every pack; prints the slots and the packs
//   replicate_bench upsert REPLICA_URL TABLE ROWS BATCH  the baseline of the apply: a plain batched
//                                                    upsert of the rows of ROWS into TABLE, BATCH per
//                                                    statement and transaction; prints seconds and
//                                                    its backend's CPU seconds (server on this host)
//   replicate_bench plain BROKER_URL QUEUE N        the ceiling: a plain rabbitmq-c consumer (prefetch
//                                                    1,000, one multiple ack per 500) drains N; prints msg/s
//   replicate_bench write PRIMARY_URL RATE SECONDS  parking writes (70% create, 30% update), each in its
//                                                    own transaction with its outbox event, at RATE/s
//   replicate_bench latency PRIMARY_URL REPLICA_URL commit-on-primary to visible-on-replica latency:
//                                                    replica applied_at - outbox created_at, p50 p99 max
//   replicate_bench wait-position REPLICA_URL POS [TABLE ROWS]  waits until the replica has committed
//                                                    position POS (and then until TABLE holds ROWS rows)
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "bench/broker.hpp"
#include "bench/process.hpp"
#include "core/amqp.hpp"
#include "examples/parking/parking.hpp"
#include "migrate/pack.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<outbox::amqp::Connection> open(const std::string& url) {
  return outbox::bench::open_broker(url, "replicate-bench");
}

// The relay's defaults: relay.pack_exchange and relay.partitions.
constexpr const char* kPackExchange = "outbox.packed";
constexpr size_t kRelayPartitions = 16;

// pack = 1: one message per event to the exchange "outbox"; pack > 1: packs, as a packing relay.
int fill(const std::string& url, long long count, size_t pack, const std::string& rows_file,
         const std::vector<std::string>& queues) {
  auto connection = open(url);
  std::ofstream rows(rows_file);
  // Both exchanges are declared by `outbox migrate` (the pack exchange when relay.pack > 1).
  const std::string exchange = pack > 1 ? kPackExchange : "outbox";
  for (const std::string& queue : queues)
    // A replica's or a consumer's queue is declared by `outbox migrate` (with its dead-letter
    // exchange and its bindings); declaring it again without them would fail.
    if (queue.rfind("outbox.replica.", 0) != 0 && queue.rfind("outbox.consumer.", 0) != 0) {
      connection->declare_queue(queue, outbox::amqp::QueueOptions{});
      connection->bind_queue(queue, exchange, "#");
    }
  connection->enable_confirms();
  std::mt19937_64 random(42);
  std::vector<std::pair<std::string, long long>> slots;  // uuid, version
  uint64_t confirmed = 0;
  auto drain_confirms = [&](uint64_t until) {
    while (confirmed < until)
      connection->poll(
          [&](outbox::amqp::Event& event) {
            if (event.kind == outbox::amqp::Event::Kind::ack)
              confirmed = event.multiple ? std::max<uint64_t>(confirmed, event.delivery_tag)
                                         : std::max<uint64_t>(confirmed, event.delivery_tag);
          },
          std::chrono::milliseconds(100));
  };
  auto publish = [&](const outbox::amqp::OutgoingMessage& message) {
    uint64_t tag = connection->publish(message);
    if (tag > confirmed + 2000) drain_confirms(tag - 1000);
  };
  std::vector<outbox::pack::Builder> builders(kRelayPartitions);
  for (long long i = 0; i < count; ++i) {
    bool create = slots.empty() || random() % 10 < 7;
    if (create) slots.emplace_back(outbox::parking::random_uuid(), 1);
    auto& [uuid, version] = create ? slots.back() : slots[random() % slots.size()];
    if (!create) ++version;
    outbox::amqp::OutgoingMessage message;
    message.exchange = "outbox";
    message.type = create ? "parking.create" : "parking.update";
    message.routing_key = message.type;
    message.message_id = outbox::parking::random_uuid();
    long long now_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    message.timestamp_seconds = now_us / 1000000;
    message.body = nlohmann::json{
        {"uuid", uuid},
        {"name", "slot " + std::to_string(i)},
        {"status", create ? "available" : "reserved"},
        {"version",
         version}}.dump();
    message.headers = {{"aggregate_type", std::string("parking_slot")},
                       {"aggregate_id", uuid},
                       {"aggregate_version", version},
                       {"created_at", now_us},
                       {"outbox_position", i + 1},
                       {"outbox_table", std::string("public.outbox")}};
    rows << message.body << "\n";
    if (pack <= 1) {
      publish(message);
      continue;
    }
    // Every event of an aggregate in one relay partition, so its packs keep its order.
    size_t partition = std::hash<std::string>{}(uuid) % kRelayPartitions;
    outbox::pack::Builder& builder = builders[partition];
    if (!builder.empty() && builder.routing_key() != message.routing_key) publish(builder.take(exchange, partition));
    builder.add(message);
    if (builder.count() == pack) publish(builder.take(exchange, partition));
  }
  for (size_t partition = 0; partition < builders.size(); ++partition)
    if (!builders[partition].empty()) publish(builders[partition].take(exchange, partition));
  drain_confirms(connection->published_count());
  const long long messages = static_cast<long long>(connection->published_count());
  for (const std::string& queue : queues)
    while (connection->inspect_queue(queue).first < messages) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::cout << slots.size();
  if (pack > 1) std::cout << " " << messages;
  std::cout << "\n";
  return 0;
}

// The same rows in the same order as replicate gets them, in batches of replicate.batch_size,
// upserted with nothing else: no version guard, no bookkeeping. (Replicate's own batches are often
// smaller, cut by group commit; bench/replicate-apply prints their mean beside this.) A batch may
// hold a create and an update of one slot, which one INSERT ... ON CONFLICT cannot both apply, so
// the newest of each slot is taken, as the apply does too.
int upsert(const std::string& replica, const std::string& table, const std::string& rows_file, size_t batch_size) {
  std::ifstream rows(rows_file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(rows, line);) lines.push_back(line);
  pqxx::connection connection(replica);
  int backend = connection.backendpid();
  connection.prepare("upsert", "INSERT INTO " + table +
                                   " AS t (uuid, name, status, version)\n"
                                   "SELECT DISTINCT ON (r.uuid) r.uuid, r.name, r.status, r.version\n"
                                   "FROM jsonb_to_recordset($1::jsonb) AS r(uuid uuid, name text, status text, version bigint)\n"
                                   "ORDER BY r.uuid, r.version DESC\n"
                                   "ON CONFLICT (uuid) DO UPDATE SET name = EXCLUDED.name, status = EXCLUDED.status, "
                                   "version = EXCLUDED.version");
  auto start = Clock::now();
  for (size_t first = 0; first < lines.size(); first += batch_size) {
    std::string batch = "[";
    for (size_t i = first; i < std::min(lines.size(), first + batch_size); ++i) batch += (i > first ? "," : "") + lines[i];
    batch += "]";
    pqxx::work tx(connection);
    tx.exec_prepared0("upsert", batch);
    tx.commit();
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("%.3f %.3f\n", seconds, outbox::bench::process_cpu_seconds(backend));
  return 0;
}

int plain(const std::string& url, const std::string& queue, long long count) {
  std::vector<char> mutable_url(url.begin(), url.end());
  mutable_url.push_back('\0');
  amqp_connection_info info{};
  if (amqp_parse_url(mutable_url.data(), &info) != AMQP_STATUS_OK) return 2;
  if (!info.vhost || !*info.vhost) info.vhost = const_cast<char*>("/");  // "amqp://host/" means vhost "/"
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(conn);
  if (amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK) return 3;
  if (amqp_login(conn, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password).reply_type !=
      AMQP_RESPONSE_NORMAL) {
    std::cerr << "replicate_bench plain: login failed\n";
    return 4;
  }
  amqp_channel_open(conn, 1);
  amqp_basic_qos(conn, 1, 0, 1000, 0);
  amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL) return 5;
  auto start = Clock::now();
  long long received = 0;
  uint64_t last_tag = 0;
  while (received < count) {
    amqp_envelope_t envelope;
    amqp_maybe_release_buffers(conn);
    amqp_rpc_reply_t reply = amqp_consume_message(conn, &envelope, nullptr, 0);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
      std::cerr << "replicate_bench plain: consume failed after " << received << " messages\n";
      return 6;
    }
    last_tag = envelope.delivery_tag;
    amqp_destroy_envelope(&envelope);
    if (++received % 500 == 0) amqp_basic_ack(conn, 1, last_tag, 1);
  }
  amqp_basic_ack(conn, 1, last_tag, 1);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  std::printf("%.0f\n", static_cast<double>(count) / seconds);
  return 0;
}

int write(const std::string& primary, int rate, int seconds) {
  constexpr int kWriters = 4;  // each commit waits for its WAL flush; several connections keep the pace
  std::atomic<long long> next{0}, done{0}, late{0};
  long long total = static_cast<long long>(rate) * seconds;
  auto start = Clock::now() + std::chrono::milliseconds(200);
  std::vector<std::thread> threads;
  std::mutex slots_mutex;
  std::vector<std::string> slots;
  for (int w = 0; w < kWriters; ++w)
    threads.emplace_back([&, w] {
      pqxx::connection connection(primary);
      std::mt19937_64 random(static_cast<unsigned long>(w) + 7);
      for (long long i; (i = next++) < total;) {
        auto due = start + std::chrono::microseconds(i * 1000000 / rate);
        if (Clock::now() > due + std::chrono::milliseconds(5)) ++late;
        std::this_thread::sleep_until(due);
        std::string uuid;
        {
          std::lock_guard<std::mutex> lock(slots_mutex);
          if (!slots.empty() && random() % 10 >= 7) uuid = slots[random() % slots.size()];
        }
        pqxx::work tx(connection);
        if (uuid.empty()) {
          std::string created = outbox::parking::create(tx, "slot " + std::to_string(i)).uuid;
          tx.commit();
          std::lock_guard<std::mutex> lock(slots_mutex);
          slots.push_back(created);
        } else {
          outbox::parking::update(tx, uuid, std::nullopt, random() % 2 ? "reserved" : "available");
          tx.commit();
        }
        ++done;
      }
    });
  for (auto& thread : threads) thread.join();
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  // The writers' own CPU (this process): bench/end-to-end shows what the load costs beside the daemons.
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::printf("%lld writes in %.1f s (%lld started more than 5 ms late; writer CPU %.2f s)\n", done.load(), took, late.load(),
              cpu);
  return 0;
}

int latency(const std::string& primary, const std::string& replica) {
  std::map<std::string, long long> created;
  {
    pqxx::connection connection(primary);
    pqxx::nontransaction tx(connection);
    for (const auto& row : tx.exec("SELECT event_id::text, (extract(epoch FROM created_at) * 1000000)::bigint FROM outbox "
                                   "WHERE event_type LIKE 'parking.%'"))
      created[row[0].as<std::string>()] = row[1].as<long long>();
  }
  std::vector<double> ms;
  {
    pqxx::connection connection(replica);
    pqxx::nontransaction tx(connection);
    for (const auto& row :
         tx.exec("SELECT event_id::text, (extract(epoch FROM applied_at) * 1000000)::bigint FROM outbox_applied_events")) {
      auto found = created.find(row[0].as<std::string>());
      if (found != created.end()) ms.push_back(static_cast<double>(row[1].as<long long>() - found->second) / 1000.0);
    }
  }
  if (ms.empty() || ms.size() != created.size()) {
    std::fprintf(stderr, "latency: %zu of %zu events applied\n", ms.size(), created.size());
    return 1;
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))]; };
  std::printf("%zu events: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", ms.size(), at(0.5), at(0.99), ms.back());
  return 0;
}

// Waits until the replica has committed the event at outbox position `position`, polling every
// 5 ms on one connection (a psql per probe would fork a backend and authenticate each time).
// That position applied means every event before it applied only where messages arrive in
// position order. A packing relay flushes a read's last packs partition by partition, so the pack
// holding the greatest position may come before packs of lower positions (in about half of the
// bulk runs, with 96,000-98,000 of 100,000 rows applied): then `table`'s count, a scan run only
// once the position is there, says when the last of those is applied too.
int wait_position(const std::string& replica, long long position, const std::string& table, long long rows) {
  pqxx::connection connection(replica);
  connection.prepare("position", "SELECT coalesce(max(last_position), 0) FROM outbox_applied_position");
  if (!table.empty()) connection.prepare("rows", "SELECT count(*) FROM " + connection.quote_name(table));
  auto deadline = Clock::now() + std::chrono::minutes(10);
  bool position_applied = false;
  while (true) {
    pqxx::nontransaction tx(connection);
    if (!position_applied) position_applied = tx.exec_prepared1("position")[0].as<long long>() >= position;
    if (position_applied && (table.empty() || tx.exec_prepared1("rows")[0].as<long long>() >= rows)) return 0;
    if (Clock::now() > deadline) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() >= 7 && args[0] == "fill" && args[1] == "--pack")
      return fill(args[3], std::stoll(args[4]), std::stoul(args[2]), args[5],
                  std::vector<std::string>(args.begin() + 6, args.end()));
    if (args.size() >= 5 && args[0] == "fill")
      return fill(args[1], std::stoll(args[2]), 1, args[3], std::vector<std::string>(args.begin() + 4, args.end()));
    if (args.size() == 5 && args[0] == "upsert") return upsert(args[1], args[2], args[3], std::stoul(args[4]));
    if (args.size() == 4 && args[0] == "plain") return plain(args[1], args[2], std::stoll(args[3]));
    if (args.size() == 4 && args[0] == "write") return write(args[1], std::stoi(args[2]), std::stoi(args[3]));
    if (args.size() == 3 && args[0] == "latency") return latency(args[1], args[2]);
    if (args.size() == 3 && args[0] == "wait-position") return wait_position(args[1], std::stoll(args[2]), "", 0);
    if (args.size() == 5 && args[0] == "wait-position")
      return wait_position(args[1], std::stoll(args[2]), args[3], std::stoll(args[4]));
  } catch (const std::exception& error) {
    std::cerr << "replicate_bench: " << error.what() << "\n";
    return 1;
  }
  std::cerr << "usage: see the comment at the top of bench/replicate_bench.cpp\n";
  return 64;
}
