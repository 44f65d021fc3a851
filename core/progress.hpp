#pragma once
// Progress of a long operation (outbox verify, outbox resync) on a terminal: one line on stderr,
// redrawn in place ("\r" + erase line) at most four times a second, with the rate and an ETA
// measured in the current phase, and erased at the end so that nothing of it stays between the
// command's report lines. The operations do not print: they call a Callback with a Step, and the
// command decides whether a Reporter draws it (only when stderr is a terminal, unless asked).
#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace outbox::progress {

struct Step {
  std::string phase;               // "comparing parking_slots"; a new phase restarts the rate and the clock
  std::string detail;              // "chunk 3" or "4 row(s) unpublished": shown as it is
  long long done = 0;              // units done in this phase
  std::optional<long long> total;  // units in the phase when known (an estimate is fine)
  std::string unit;                // "rows"; empty: the phase counts nothing (a wait)
};
using Callback = std::function<void(const Step&)>;

// Calls `callback` if there is one: what the operations use.
inline void report(const Callback& callback, const Step& step) {
  if (callback) callback(step);
}

// "850ms" below a second, then "4s", "1m05s", "2h03m".
std::string short_duration(double seconds);
// Seconds left at the rate measured so far; nullopt without a total, without progress yet, or
// before half a second has passed (too early for a rate worth showing).
std::optional<double> eta_seconds(long long done, std::optional<long long> total, double elapsed_seconds);
// The line for `step` after `elapsed_seconds` in its phase (no "\r", no newline, not escaped):
// "comparing parking_slots: chunk 3, 30000/100000 rows (30%), 15000 rows/s, ETA 5s".
std::string render(const Step& step, double elapsed_seconds);
// The line cut to `width` - 1 columns (a line as wide as the terminal wraps, and "\r" then
// redraws only its last part); a width of 0 (unknown) leaves it whole.
std::string fit(const std::string& line, size_t width);

enum class Mode { automatic, always, never };
// "auto", "always", "never"; anything else is Error(usage) naming `option`.
Mode parse_mode(const std::string& text, const std::string& option);
// always; never; automatic: when `fd` is a terminal.
bool enabled(Mode mode, int fd);

class Reporter {
 public:
  // Draws on `fd` when `enabled`; otherwise every call does nothing.
  Reporter(int fd, bool enabled);
  ~Reporter();  // clear()
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  // Draws at once when the phase changes, else at most every 250 ms.
  void update(const Step& step);
  // Erases the line (before the report goes out, and at the end).
  void clear();
  // A Callback that updates this Reporter (which must outlive it), or none when not enabled.
  Callback callback();

 private:
  using Clock = std::chrono::steady_clock;
  void draw(const std::string& text);
  int fd_;
  bool enabled_;
  bool drawn_ = false;
  std::string phase_;
  Clock::time_point phase_start_, last_draw_;
};

}  // namespace outbox::progress
