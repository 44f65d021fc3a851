#include "core/url.hpp"

#include <cctype>
#include <cstdio>
#include <regex>

namespace outbox {
namespace {

// "password" as libpq reads a key: each letter may be percent-encoded (%70assword), any case.
const std::regex& keyword_password() {
  static const std::regex re = [] {
    std::string pattern = "(";
    for (char c : std::string("password")) {
      char upper = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      char hex[16];
      std::snprintf(hex, sizeof hex, "%02x|%02X|%02x|%02X", c, c, upper, upper);
      pattern += std::string("(?:") + c + "|" + upper + "|%(?:" + hex + "))";
    }
    pattern += R"(\s*=\s*)('[^']*'|[^&\s'"]+))";
    return std::regex(pattern);
  }();
  return re;
}

// A password may hold quotes (libpq and RabbitMQ take them): only whitespace ends a URL here.
bool token_end(char c) { return std::isspace(static_cast<unsigned char>(c)); }

// Masks the userinfo password of every "scheme://user:password@..." in the text. The password ends
// at the token's last '@', so one with an unencoded '/' or '@' is masked whole. This errs toward
// hiding too much: in "postgresql://h:5432/db?application_name=a@b" the port and path are hidden.
std::string mask_userinfo(std::string text, bool* found) {
  size_t scheme_end = text.find("://");
  while (scheme_end != std::string::npos) {
    size_t start = scheme_end + 3, end = start;
    while (end < text.size() && !token_end(text[end])) ++end;
    size_t first_at = text.find('@', start), colon = text.find(':', start);
    if (first_at != std::string::npos && first_at < end && colon != std::string::npos && colon < first_at) {
      size_t last_at = text.rfind('@', end - 1);
      if (found) *found = true;
      text.replace(colon + 1, last_at - colon - 1, "****");
      end = colon + 1 + 4 + (end - last_at);
    }
    // The next URL starts after this token: each character is looked at a bounded number of times.
    scheme_end = text.find("://", end);
  }
  return text;
}

}  // namespace

std::string mask_url(std::string_view url) {
  std::string text = mask_userinfo(std::string(url), nullptr);
  return std::regex_replace(text, keyword_password(), "$1****");
}

bool url_has_password(std::string_view url) {
  bool found = false;
  std::string text = mask_userinfo(std::string(url), &found);
  return found || std::regex_search(text, keyword_password());
}

std::string mask_credentials(std::string_view value) {
  std::string text = mask_url(value);
  // Without a scheme ("user:password@host/db") only the shape says where a password is.
  if (text.find("://") == std::string::npos) {
    size_t at = text.rfind('@'), colon = text.find(':');
    if (at != std::string::npos && colon != std::string::npos && colon < at) text.replace(colon + 1, at - colon - 1, "****");
  }
  return text;
}

}  // namespace outbox
