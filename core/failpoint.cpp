#include "core/failpoint.hpp"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>

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
  if (action.rfind("sleep:", 0) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::stol(action.substr(6))));
}

}  // namespace outbox
