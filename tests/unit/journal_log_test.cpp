// Issue 17: when stderr is the journal ($JOURNAL_STREAM names its device and inode), each log line
// starts with its syslog priority ("<4>"), which journald strips and keeps, so that `journalctl -p
// warning` shows exactly the warnings and errors. Elsewhere the lines stay as they are. A real
// journal needs systemd as PID 1 and a user bus, which the test machines lack: the stream is a pipe
// here, named by a JOURNAL_STREAM that matches it, as systemd would set it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/log.hpp"

using namespace outbox;

namespace {

std::string device_and_inode(int fd) {
  struct stat info {};
  EXPECT_EQ(fstat(fd, &info), 0);
  return std::to_string(info.st_dev) + ":" + std::to_string(info.st_ino);
}

// Runs `body` with stderr going into a pipe and JOURNAL_STREAM set to `journal_stream(pipe's write
// end)`; returns what was written to stderr. The logger is set up again inside, as at start.
template <typename Body>
std::string stderr_of(const std::string& format, const std::function<std::string(int)>& journal_stream, Body body) {
  int pipe_fds[2];
  EXPECT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  dup2(pipe_fds[1], STDERR_FILENO);
  std::string stream = journal_stream(pipe_fds[1]);
  if (stream.empty())
    unsetenv("JOURNAL_STREAM");
  else
    setenv("JOURNAL_STREAM", stream.c_str(), 1);
  log::setup("debug", format);
  body();
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(pipe_fds[1]);
  unsetenv("JOURNAL_STREAM");
  log::setup("info", "text");
  std::string out;
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<size_t>(n));
  close(pipe_fds[0]);
  return out;
}

void log_one_of_each() {
  auto logger = log::get("journal test");
  logger->debug("a debug line");
  logger->info("an info line");
  logger->warn("a warning line");
  logger->error("an error line");
}

// The lines of the text, each cut after its first `length` characters.
std::vector<std::string> line_starts(const std::string& text, size_t length) {
  std::vector<std::string> starts;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    starts.push_back(text.substr(at, std::min(length, end - at)));
    at = end + 1;
  }
  return starts;
}

}  // namespace

TEST(JournalLog, EachLineStartsWithItsPriorityWhenStderrIsTheJournal) {
  std::string out = stderr_of("text", device_and_inode, log_one_of_each);
  EXPECT_EQ(line_starts(out, 3), (std::vector<std::string>{"<7>", "<6>", "<4>", "<3>"})) << out;
  EXPECT_NE(out.find(" warning journal test: a warning line\n"), std::string::npos) << out;
}

TEST(JournalLog, JsonLinesCarryThePriorityBeforeTheObjectWhichJournaldStrips) {
  std::string out = stderr_of("json", device_and_inode, log_one_of_each);
  EXPECT_EQ(line_starts(out, 5), (std::vector<std::string>{"<7>{\"", "<6>{\"", "<4>{\"", "<3>{\""})) << out;
}

TEST(JournalLog, WithoutTheJournalOrWithAnotherStreamTheLinesStayAsTheyAre) {
  std::string none = stderr_of(
      "text", [](int) { return std::string(); }, log_one_of_each);
  EXPECT_EQ(line_starts(none, 2), (std::vector<std::string>{"20", "20", "20", "20"})) << none;
  // The journal's stream was inherited, but this process's stderr goes elsewhere (a pipe of its own).
  std::string elsewhere = stderr_of(
      "text", [](int) { return std::string("1:2"); }, log_one_of_each);
  EXPECT_EQ(line_starts(elsewhere, 2), (std::vector<std::string>{"20", "20", "20", "20"})) << elsewhere;
}

TEST(JournalLog, OnlyAJournalStreamThatNamesTheDescriptorsDeviceAndInodeCounts) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  std::string own = device_and_inode(pipe_fds[1]);
  EXPECT_TRUE(log::is_journal_stream(own.c_str(), pipe_fds[1]));
  EXPECT_FALSE(log::is_journal_stream(nullptr, pipe_fds[1]));
  EXPECT_FALSE(log::is_journal_stream("", pipe_fds[1]));
  EXPECT_FALSE(log::is_journal_stream((own + "x").c_str(), pipe_fds[1]));
  EXPECT_FALSE(log::is_journal_stream(own.substr(0, own.find(':')).c_str(), pipe_fds[1]));
  int other[2];
  ASSERT_EQ(pipe(other), 0);
  EXPECT_FALSE(log::is_journal_stream(own.c_str(), other[1]));
  for (int fd : {pipe_fds[0], pipe_fds[1], other[0], other[1]}) close(fd);
  EXPECT_EQ(log::journal_prefix(spdlog::level::trace), "<7>");
  EXPECT_EQ(log::journal_prefix(spdlog::level::critical), "<2>");
}
