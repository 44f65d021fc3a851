#pragma once
// The passwords kept outside the URLs. Each URL option (primary.url, broker.url, replicas.NAME.url,
// services.NAME.url) has two companions in its section: password_file, a file that holds only the
// password, and password_credential, the name of a systemd credential in $CREDENTIALS_DIRECTORY
// (LoadCredential=NAME:PATH in the unit). The password is read when the config is loaded (at start
// and on each reload) and put, percent-encoded, into the URL: every connection, and every masking
// of a URL in output, then works as with a password written in the URL. The URL's Setting records
// where the password came from (password_origin) for `config show`.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace outbox::config {

struct PasswordSources {
  std::string config_path;                              // a relative password_file is relative to its directory
  std::function<const char*(const char*)> getenv = {};  // for $CREDENTIALS_DIRECTORY
};

// Reads the password of `section` ("primary", "replicas.eu") into the URL(s) of SECTION.url, when
// one of its password options is set. Throws Error(config) naming the option and the file (never a
// byte of it): both options set, a file that cannot be read, is empty or holds more than one line,
// a URL that has a password too or names no user, a credential outside systemd. A password file that
// group or other users can read adds a warning.
void read_password(std::map<std::string, Setting>& values, const std::string& section, const PasswordSources& sources,
                   std::vector<std::string>& warnings);

}  // namespace outbox::config
