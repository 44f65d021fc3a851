// The Prometheus text the daemons render, and the bounds of their metrics endpoint's connections.
#include "core/metrics.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <limits>

#include "core/metrics_server.hpp"

using namespace outbox::metrics;
using namespace std::chrono_literals;

TEST(Metrics, ALabelValueHasItsBackslashQuoteAndNewlineEscaped) {
  EXPECT_EQ(escape_label_value("public.ev\"il\\x\ny"), "public.ev\\\"il\\\\x\\ny");
  EXPECT_EQ(escape_label_value("plain.name"), "plain.name");
  EXPECT_EQ(render_labels({{"replica", "main"}, {"reason", "a\"b"}}), "replica=\"main\",reason=\"a\\\"b\"");
}

TEST(Metrics, HelpTextHasItsBackslashAndNewlineEscapedButNotItsQuotes) {
  EXPECT_EQ(escape_help("rows \"left\" in C:\\q\nsecond line"), "rows \"left\" in C:\\\\q\\nsecond line");
}

TEST(Metrics, AHostileTableNameStaysInsideItsLabel) {
  Registry registry;
  registry.gauge("outbox_relay_backlog", "Unpublished rows", {{"table", "public.ev\"il\\\n} 1\nforged 2"}}).set(3);
  std::string text = registry.render();
  EXPECT_NE(text.find("outbox_relay_backlog{table=\"public.ev\\\"il\\\\\\n} 1\\nforged 2\"} 3\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("\nforged"), std::string::npos) << "a line was forged:\n" << text;
}

TEST(Metrics, ALaterLookupWithoutHelpKeepsTheHelpText) {
  Registry registry;
  registry.counter("outbox_relay_published_total", "Messages published to the broker");
  registry.counter("outbox_relay_published_total", "").add();
  EXPECT_NE(registry.render().find("# HELP outbox_relay_published_total Messages published to the broker\n"), std::string::npos)
      << registry.render();
}

TEST(Metrics, SpecialGaugeValuesAreSpelledAsTheTextFormatSpellsThem) {
  Registry registry;
  registry.gauge("a", "x", {{"v", "nan"}}).set(std::numeric_limits<double>::quiet_NaN());
  registry.gauge("a", "x", {{"v", "inf"}}).set(std::numeric_limits<double>::infinity());
  registry.gauge("a", "x", {{"v", "-inf"}}).set(-std::numeric_limits<double>::infinity());
  std::string text = registry.render();
  EXPECT_NE(text.find("a{v=\"nan\"} NaN\n"), std::string::npos) << text;
  EXPECT_NE(text.find("a{v=\"inf\"} +Inf\n"), std::string::npos) << text;
  EXPECT_NE(text.find("a{v=\"-inf\"} -Inf\n"), std::string::npos) << text;
}

TEST(Metrics, AGaugeWhoseValueIsUnknownIsLeftOutUntilItIsSetAgain) {
  Registry registry;
  Gauge& lag = registry.gauge("outbox_replicate_lag_seconds", "Seconds behind", {{"replica", "main"}});
  lag.set(2.5);
  lag.clear();
  std::string text = registry.render();
  EXPECT_EQ(text.find("outbox_replicate_lag_seconds{"), std::string::npos) << "an unknown value was exported:\n" << text;
  EXPECT_NE(text.find("# TYPE outbox_replicate_lag_seconds gauge\n"), std::string::npos) << text;
  lag.set(0);
  EXPECT_NE(registry.render().find("outbox_replicate_lag_seconds{replica=\"main\"} 0\n"), std::string::npos) << registry.render();
}

TEST(Metrics, HistogramsOfTwoReplicasInOneProcessAreKeptApartByTheirLabel) {
  Registry registry;
  registry.histogram("outbox_replicate_batch_seconds", "Batch time", {0.1, 1}, {{"replica", "a"}}).observe(0.05);
  registry.histogram("outbox_replicate_batch_seconds", "", {}, {{"replica", "b"}}).observe(5);
  std::string text = registry.render();
  for (const char* line : {"outbox_replicate_batch_seconds_bucket{replica=\"a\",le=\"0.1\"} 1\n",
                           "outbox_replicate_batch_seconds_bucket{replica=\"a\",le=\"+Inf\"} 1\n",
                           "outbox_replicate_batch_seconds_count{replica=\"a\"} 1\n",
                           "outbox_replicate_batch_seconds_bucket{replica=\"b\",le=\"1\"} 0\n",
                           "outbox_replicate_batch_seconds_bucket{replica=\"b\",le=\"+Inf\"} 1\n",
                           "outbox_replicate_batch_seconds_sum{replica=\"b\"} 5\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << text;
  EXPECT_EQ(text.find("# TYPE outbox_replicate_batch_seconds histogram"), text.rfind("# TYPE outbox_replicate_batch_seconds"))
      << "one family, one TYPE line:\n"
      << text;
}

TEST(Metrics, ProcessStatFieldsAreCountedFromTheLastParenthesisOfTheCommandName) {
  // A command name may hold spaces and parentheses; fields 14, 15 (CPU ticks), 22 (start ticks),
  // 23 (virtual bytes) and 24 (resident pages) follow it.
  std::string stat =
      "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 8192000 300 18446744073709551615";
  auto parsed = parse_process_stat(stat, 100, 4096);
  ASSERT_TRUE(parsed);
  EXPECT_DOUBLE_EQ(parsed->cpu_seconds, 3.0);
  EXPECT_DOUBLE_EQ(parsed->start_after_boot, 10.0);
  EXPECT_DOUBLE_EQ(parsed->virtual_bytes, 8192000);
  EXPECT_DOUBLE_EQ(parsed->resident_bytes, 300.0 * 4096);
  EXPECT_FALSE(parse_process_stat("4242 (truncated) S 1 2", 100, 4096));
}

TEST(Metrics, ThisProcessExportsTheStandardProcessMetrics) {
  std::string text = render_process_metrics();
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                           "process_start_time_seconds", "process_open_fds", "process_max_fds"}) {
    EXPECT_NE(text.find("# TYPE " + std::string(name) + " "), std::string::npos) << name << " missing:\n" << text;
    EXPECT_NE(text.find("\n" + std::string(name) + " "), std::string::npos) << name << " has no sample:\n" << text;
  }
}

namespace {
// A connected pair of sockets: the watch gets one end (as libmicrohttpd's connection), the test
// reads the other (as the client) to see whether the watch closed it.
struct Client {
  int server = -1, client = -1;
  Client() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    server = fds[0];
    client = fds[1];
  }
  ~Client() {
    close(server);
    close(client);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  // The server end was shut down: the client reads an end of stream instead of "nothing yet".
  bool closed_by_server() const {
    char byte;
    return recv(client, &byte, 1, MSG_DONTWAIT) == 0;
  }
};
}  // namespace

TEST(ConnectionWatch, ANewConnectionBeyondTheLimitClosesTheOldestAndNoOther) {
  ConnectionWatch watch(2, 10s);
  Client first, second, third;
  auto start = ConnectionWatch::Clock::now();
  watch.opened(first.server, start);
  watch.opened(second.server, start + 1s);
  EXPECT_FALSE(first.closed_by_server());
  watch.opened(third.server, start + 2s);
  EXPECT_TRUE(first.closed_by_server());
  EXPECT_FALSE(second.closed_by_server());
  EXPECT_FALSE(third.closed_by_server());
  EXPECT_EQ(watch.open(), 2u);
}

TEST(ConnectionWatch, ARequestNotAnsweredByItsDeadlineIsClosedWhateverItSent) {
  ConnectionWatch watch(8, 10s);
  Client slow, answered;
  auto start = ConnectionWatch::Clock::now();
  watch.opened(slow.server, start);
  watch.opened(answered.server, start);
  watch.answered(answered.server, start + 8s);  // its next request began then
  watch.close_overdue(start + 9s);
  EXPECT_FALSE(slow.closed_by_server());
  watch.close_overdue(start + 11s);
  EXPECT_TRUE(slow.closed_by_server());
  EXPECT_FALSE(answered.closed_by_server());
  watch.close_overdue(start + 19s);
  EXPECT_TRUE(answered.closed_by_server());
}

// A closed connection's descriptor number is soon another socket's: the watch must never shut
// it down again, neither at the deadline nor to make room.
TEST(ConnectionWatch, AClosedConnectionIsForgottenAndNeverClosedAgain) {
  ConnectionWatch watch(1, 10s);
  auto start = ConnectionWatch::Clock::now();
  {
    Client gone;
    watch.opened(gone.server, start);
    watch.closed(gone.server);
    EXPECT_EQ(watch.open(), 0u);
  }
  Client next;  // likely gets the numbers `gone` had
  watch.opened(next.server, start + 1s);
  watch.close_overdue(start + 10500ms);  // `gone` would be overdue now, `next` is not
  EXPECT_FALSE(next.closed_by_server());
  EXPECT_EQ(watch.open(), 1u);
}
