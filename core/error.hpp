#pragma once
// Errors carry an exit code (sysexits) and a message that each layer may prefix with context.
// main() has the only catch that turns them into an exit status.
#include <stdexcept>
#include <string>
#include <string_view>

namespace outbox {

enum class ExitCode : int {
  ok = 0,
  usage = 64,        // EX_USAGE: bad command line
  data = 65,         // EX_DATAERR: bad input data (unknown uuid, invalid name)
  unavailable = 69,  // EX_UNAVAILABLE: a server cannot be reached
  software = 70,     // EX_SOFTWARE: a bug
  tempfail = 75,     // EX_TEMPFAIL: try again later (e.g. a replica that is too stale)
  config = 78,       // EX_CONFIG: bad configuration
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const noexcept { return code_; }
  // Returns a copy whose message is "context: message", keeping the code.
  Error with_context(const std::string& context) const { return Error(code_, context + ": " + what()); }

 private:
  ExitCode code_;
};

inline Error usage_error(const std::string& message) { return Error(ExitCode::usage, message); }
inline Error data_error(const std::string& message) { return Error(ExitCode::data, message); }
inline Error config_error(const std::string& message) { return Error(ExitCode::config, message); }
inline Error unavailable_error(const std::string& message) { return Error(ExitCode::unavailable, message); }

// The first line of an error text: libpq and libpqxx messages go on over several lines ("ERROR:
// ...\nLINE 1: ...", "...\nDETAIL: ..."), and an error reported by outbox is one line.
inline std::string first_line(std::string_view text) { return std::string(text.substr(0, text.find('\n'))); }

}  // namespace outbox
