// The progress line of verify and resync (core/progress.hpp): its text, rate and ETA, its width,
// and a Reporter that is not enabled writing nothing.
#include "core/progress.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/unit/expect_error.hpp"

using namespace outbox;
using outbox::progress::Step;

TEST(Progress, ShortDurationsReadAsMillisecondsSecondsMinutesOrHours) {
  EXPECT_EQ(progress::short_duration(0.25), "250ms");
  EXPECT_EQ(progress::short_duration(4.4), "4s");
  EXPECT_EQ(progress::short_duration(65), "1m05s");
  EXPECT_EQ(progress::short_duration(7380), "2h03m");
}

TEST(Progress, TheEtaComesFromTheRateMeasuredSoFar) {
  // 300 of 1000 in 3 s: 100 a second, 700 left.
  EXPECT_DOUBLE_EQ(*progress::eta_seconds(300, 1000, 3.0), 7.0);
  EXPECT_FALSE(progress::eta_seconds(300, std::nullopt, 3.0)) << "no total, no ETA";
  EXPECT_FALSE(progress::eta_seconds(0, 1000, 3.0)) << "no progress yet, no rate";
  EXPECT_FALSE(progress::eta_seconds(300, 1000, 0.1)) << "too early for a rate";
  EXPECT_FALSE(progress::eta_seconds(1200, 1000, 3.0)) << "past an estimated total, the end is not known";
}

TEST(Progress, ALineShowsTheDetailTheCountTheRateAndTheEta) {
  Step step{"comparing parking_slots", "chunk 3", 30000, 100000, "rows"};
  EXPECT_EQ(progress::render(step, 2.0), "comparing parking_slots: chunk 3, 30000/100000 rows (30%), 15000 rows/s, ETA 5s");
  step.total.reset();
  EXPECT_EQ(progress::render(step, 2.0), "comparing parking_slots: chunk 3, 30000 rows, 15000 rows/s, 2s so far");
  Step slow{"resyncing parking_slots", "", 3, 10, "rows"};
  EXPECT_EQ(progress::render(slow, 4.0), "resyncing parking_slots: 3/10 rows (30%), 0.8 rows/s, ETA 9s");
}

TEST(Progress, AWaitShowsItsDetailAndHowLongItHasWaited) {
  Step wait{"waiting for the relay", "4 row(s) unpublished up to position 812", 0, std::nullopt, ""};
  EXPECT_EQ(progress::render(wait, 3.2), "waiting for the relay: 4 row(s) unpublished up to position 812, 3s so far");
  Step just{"waiting for replica main", "", 0, std::nullopt, ""};
  EXPECT_EQ(progress::render(just, 0.1), "waiting for replica main: 100ms so far");
}

TEST(Progress, ALineIsCutToOneColumnLessThanTheTerminalWithoutSplittingACharacter) {
  EXPECT_EQ(progress::fit("abcdef", 0), "abcdef");
  EXPECT_EQ(progress::fit("abcdef", 7), "abcdef");
  EXPECT_EQ(progress::fit("abcdef", 4), "abc");
  EXPECT_EQ(progress::fit("ab\xc3\xa9xyz", 4), "ab");  // é is two bytes: not cut in half
}

TEST(Progress, TheModeIsAutoAlwaysOrNeverAndAnythingElseIsAUsageError) {
  EXPECT_EQ(progress::parse_mode("auto", "--progress"), progress::Mode::automatic);
  EXPECT_EQ(progress::parse_mode("always", "--progress"), progress::Mode::always);
  EXPECT_EQ(progress::parse_mode("never", "--progress"), progress::Mode::never);
  outbox::testing::expect_error([] { progress::parse_mode("yes", "--progress"); }, ExitCode::usage,
                                "--progress: auto, always or never (got 'yes')");
  EXPECT_TRUE(progress::enabled(progress::Mode::always, -1));
  EXPECT_FALSE(progress::enabled(progress::Mode::never, STDERR_FILENO));
}

TEST(Progress, AReporterThatIsNotEnabledWritesNothingAndGivesNoCallback) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  {
    progress::Reporter reporter(pipe_fds[1], progress::enabled(progress::Mode::automatic, pipe_fds[1]));
    EXPECT_FALSE(reporter.callback());
    reporter.update({"comparing t", "chunk 1", 1, 2, "rows"});
  }
  ::close(pipe_fds[1]);
  char buffer[16];
  EXPECT_EQ(::read(pipe_fds[0], buffer, sizeof buffer), 0);
  ::close(pipe_fds[0]);
}

TEST(Progress, AnEnabledReporterRedrawsItsLineInPlaceAndErasesItAtTheEnd) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  {
    progress::Reporter reporter(pipe_fds[1], true);
    progress::Callback callback = reporter.callback();
    ASSERT_TRUE(callback);
    callback({"comparing t", "chunk 1", 1, 2, "rows"});
    callback({"rechecking t", "", 0, 1, "rows"});  // a new phase draws at once
  }
  ::close(pipe_fds[1]);
  std::string written;
  char buffer[256];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) written.append(buffer, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  EXPECT_EQ(written,
            "\r\033[Kcomparing t: chunk 1, 1/2 rows (50%), 0ms so far"
            "\r\033[Krechecking t: 0/1 rows (0%), 0ms so far"
            "\r\033[K");
}
