#pragma once
#include <string>
#include <string_view>

namespace outbox {

// Replaces the password in "scheme://user:password@host/..." with "****". Also masks a
// "password=..." keyword in libpq key/value strings. Used for every URL that reaches a log or output.
std::string mask_url(std::string_view url);
// True when the URL carries a password.
bool url_has_password(std::string_view url);
// mask_url, and for a value that is not a URL but looks like "user:password@host", masks that too:
// for echoing back a mistyped setting.
std::string mask_credentials(std::string_view value);

}  // namespace outbox
