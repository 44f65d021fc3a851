#pragma once
#include <string>
#include <string_view>

namespace outbox {

// Replaces the password in "scheme://user:password@host/..." with "****". Also masks a
// "password=..." keyword in libpq key/value strings. Used for every URL that reaches a log or output.
std::string mask_url(std::string_view url);
// True when the URL carries a password.
bool url_has_password(std::string_view url);
// mask_url, and for a value that is not a URL but looks like "user:password@host" or "word@host",
// masks what is before the '@' too: for echoing back a mistyped setting.
std::string mask_credentials(std::string_view value);
// Replaces, in a server library's message about `url`, each copy of the URL's password (as written
// and percent-decoded; libpq quotes a malformed one back): for errors that mask_url cannot parse.
std::string scrub_password(std::string message, std::string_view url);
// Why the URL cannot be used as written, or "": whitespace or control characters, a '%' that is
// not followed by two hex digits, or a userinfo_problem. The reason never quotes the URL (it may
// be a password's fault).
std::string url_syntax_problem(std::string_view url);
// Why the user name and password of the URL would not be read as written, or "": an unencoded
// '/', '?', '#' or '@' in them (seen as a second '@', or an '@' after a '/', '?' or '#' that
// follows a ':'); in an amqp:// URL also a second ':', '[' or ']'. libpq and librabbitmq would take
// the rest of such a password for the host, port or database and quote it in their errors.
std::string userinfo_problem(std::string_view url);
// True when "scheme://user@host..." names a user (with or without a password).
bool url_has_user(std::string_view url);
// The URL with `password` (percent-encoded) after its user name: "scheme://user@h" becomes
// "scheme://user:p%40ss@h". For a password kept in a file or a systemd credential; the URL must
// name a user and carry no password (checked by the caller, which can name the options).
std::string url_with_password(std::string_view url, std::string_view password);

}  // namespace outbox
