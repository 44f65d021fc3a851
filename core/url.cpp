#include "core/url.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <regex>
#include <utility>
#include <vector>

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

// Where the userinfo password of every "scheme://user:password@..." in the text is: (offset,
// length) pairs in order. The password ends at the token's last '@', so one with an unencoded '/'
// or '@' is taken whole. This errs toward hiding too much: in
// "postgresql://h:5432/db?application_name=a@b" the port and path count as the password.
std::vector<std::pair<size_t, size_t>> userinfo_passwords(std::string_view text) {
  std::vector<std::pair<size_t, size_t>> spans;
  size_t scheme_end = text.find("://");
  while (scheme_end != std::string_view::npos) {
    size_t start = scheme_end + 3, end = start;
    while (end < text.size() && !token_end(text[end])) ++end;
    size_t first_at = text.find('@', start), colon = text.find(':', start);
    if (first_at != std::string_view::npos && first_at < end && colon != std::string_view::npos && colon < first_at) {
      size_t last_at = text.rfind('@', end - 1);
      spans.emplace_back(colon + 1, last_at - colon - 1);
    }
    // The next URL starts after this token: each character is looked at a bounded number of times.
    scheme_end = text.find("://", end);
  }
  return spans;
}

// Masks the userinfo password of every URL in the text; `found` tells whether there was one.
std::string mask_userinfo(std::string text, bool* found) {
  auto spans = userinfo_passwords(text);
  if (found) *found = !spans.empty();
  // From the last one, so that the offsets of the earlier ones still hold.
  for (auto span = spans.rbegin(); span != spans.rend(); ++span) text.replace(span->first, span->second, "****");
  return text;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decoded(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 && hex_digit(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// The passwords a URL carries: its userinfo's, and each password=... of its query.
std::vector<std::string> passwords_of(std::string_view url) {
  std::vector<std::string> out;
  for (auto [offset, length] : userinfo_passwords(url)) out.emplace_back(url.substr(offset, length));
  std::string text(url);
  for (std::sregex_iterator match(text.begin(), text.end(), keyword_password()), end; match != end; ++match) {
    std::string value = (*match)[2].str();
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') value = value.substr(1, value.size() - 2);
    out.push_back(value);
  }
  return out;
}

}  // namespace

std::string scrub_password(std::string message, std::string_view url) {
  for (const std::string& raw : passwords_of(url))
    for (const std::string& secret : {raw, percent_decoded(raw)}) {
      // Shorter ones would garble the message (a password "a"); mask_url still hides them in URLs.
      if (secret.size() < 3) continue;
      for (size_t at = message.find(secret); at != std::string::npos; at = message.find(secret, at + 4))
        message.replace(at, secret.size(), "****");
    }
  return message;
}

std::string url_syntax_problem(std::string_view url) {
  for (size_t i = 0; i < url.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(url[i]);
    if (std::isspace(c) || std::iscntrl(c))
      return "must not contain whitespace or control characters (percent-encode them, e.g. %20)";
    if (c == '%' && (i + 2 >= url.size() || hex_digit(url[i + 1]) < 0 || hex_digit(url[i + 2]) < 0))
      return "has a '%' that is not followed by two hex digits (write a literal '%' as %25)";
  }
  return userinfo_problem(url);
}

std::string userinfo_problem(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "";
  size_t start = scheme_end + 3;
  size_t authority_end = std::min(url.find_first_of("/?#", start), url.size());
  std::string_view authority = url.substr(start, authority_end - start);
  size_t at = authority.find('@');
  size_t ats = static_cast<size_t>(std::count(url.begin(), url.end(), '@'));
  // libpq and librabbitmq end the user name and password at the first '@', and the host part at the
  // first '/', '?' or '#': with such a character unencoded in a password, the rest of the password
  // becomes the host, port or database, which their errors quote. Which '@' or '/' belongs to the
  // password cannot be told from the text, so a second '@', or an '@' after a '/', '?' or '#' that
  // follows a ':', is refused (an '@' in the path or query works as %40 too).
  bool cut = ats > 1 || (ats == 1 && at == std::string_view::npos && authority.find(':') != std::string_view::npos);
  if (cut)
    return "the user name and password must be percent-encoded (/ as %2F, @ as %40, ? as %3F, # as %23, : as %3A), and "
           "an '@' after the host as %40";
  // librabbitmq also ends the password at a second ':' and at '[' or ']'.
  bool amqp = url.substr(0, scheme_end) == "amqp" || url.substr(0, scheme_end) == "amqps";
  if (amqp && at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    size_t colon = userinfo.find(':');
    if (userinfo.find_first_of("[]") != std::string_view::npos ||
        (colon != std::string_view::npos && userinfo.find(':', colon + 1) != std::string_view::npos))
      return "the user name and password of an AMQP URL must be percent-encoded (: as %3A, [ as %5B, ] as %5D, / as %2F, "
             "@ as %40)";
  }
  return "";
}

namespace {

// The user name and password of "scheme://userinfo@host...": where the userinfo starts and how long
// it is, or nullopt when the authority has no '@'.
std::optional<std::pair<size_t, size_t>> userinfo_span(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  size_t start = scheme_end + 3;
  size_t authority_end = std::min(url.find_first_of("/?#", start), url.size());
  size_t at = url.substr(start, authority_end - start).find('@');
  if (at == std::string_view::npos) return std::nullopt;
  return std::pair{start, at};
}

}  // namespace

bool url_has_user(std::string_view url) {
  auto span = userinfo_span(url);
  if (!span) return false;
  std::string_view userinfo = url.substr(span->first, span->second);
  return !userinfo.empty() && userinfo.front() != ':';
}

std::string url_with_password(std::string_view url, std::string_view password) {
  auto span = userinfo_span(url);
  if (!span) return std::string(url);
  std::string encoded;
  // Only the unreserved characters stay as they are: libpq and librabbitmq decode the rest.
  for (unsigned char c : password) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      encoded += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      encoded += hex;
    }
  }
  std::string out(url);
  out.insert(span->first + span->second, ":" + encoded);
  return out;
}

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
  // Without a scheme ("user:password@host/db") only the shape says where a password is. Without a
  // colon before the '@' it may be the tail of a password that a ',' split off a list of URLs
  // ("amqp://u:pass,word@h/" in OUTBOX_BROKER_URL): all that is before the '@' is hidden.
  if (text.find("://") == std::string::npos) {
    size_t at = text.rfind('@'), colon = text.find(':');
    if (at != std::string::npos && colon != std::string::npos && colon < at)
      text.replace(colon + 1, at - colon - 1, "****");
    else if (at != std::string::npos)
      text.replace(0, at, "****");
  }
  return text;
}

}  // namespace outbox
