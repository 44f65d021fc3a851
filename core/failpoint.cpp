#include "core/failpoint.hpp"

#include <csignal>
#include <cstdlib>
#include <string>

#include "core/error.hpp"

namespace outbox {

void failpoint(std::string_view name) {
  static const char* configured = std::getenv("OUTBOX_FAILPOINTS");
  if (!configured || !*configured) return;
  std::string list = std::string(",") + configured + ",";
  std::string key = "," + std::string(name) + "=";
  size_t at = list.find(key);
  if (at == std::string::npos) return;
  std::string action = list.substr(at + key.size(), list.find(',', at + key.size()) - at - key.size());
  if (action == "crash") std::raise(SIGKILL);
  if (action == "error") throw Error(ExitCode::software, "failpoint " + std::string(name) + ": injected failure");
}

}  // namespace outbox
