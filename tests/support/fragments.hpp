#pragma once
// The secrets checks of the unit and the integration tests ("no output channel shows a fragment
// of a password"): header-only, as the two kinds of test binary share no test library.
#include <string>
#include <vector>

namespace outbox::testing {

// Every piece of four characters of `secret` that `text` contains: none may appear.
inline std::vector<std::string> fragments_in(const std::string& text, const std::string& secret) {
  std::vector<std::string> found;
  for (size_t at = 0; at + 4 <= secret.size(); ++at)
    if (text.find(secret.substr(at, 4)) != std::string::npos) found.push_back(secret.substr(at, 4));
  return found;
}

}  // namespace outbox::testing
