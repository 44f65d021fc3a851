#include "core/url.hpp"

#include <regex>

namespace outbox {
namespace {
// scheme://user:password@  — the password ends at the last '@' before the host part.
const std::regex& userinfo_password() {
  static const std::regex re(R"(^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):([^/]*)@)");
  return re;
}
const std::regex& keyword_password() {
  static const std::regex re(R"((password\s*=\s*)('[^']*'|[^&\s]+))");
  return re;
}
}  // namespace

std::string mask_url(std::string_view url) {
  std::string text(url);
  text = std::regex_replace(text, userinfo_password(), "$1:****@", std::regex_constants::format_first_only);
  text = std::regex_replace(text, keyword_password(), "$1****");
  return text;
}

bool url_has_password(std::string_view url) {
  std::string text(url);
  return std::regex_search(text, userinfo_password()) || std::regex_search(text, keyword_password());
}

}  // namespace outbox
