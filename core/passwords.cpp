// The passwords kept outside the URLs: see core/passwords.hpp.
#include "core/passwords.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/escape.hpp"
#include "core/option_types.hpp"
#include "core/url.hpp"

namespace outbox::config {
namespace {

// Relative to the config file's directory, as services.NAME.migrations.
std::string password_file_path(const std::string& file, const std::string& config_path) {
  if (std::filesystem::path(file).is_absolute() || config_path.empty()) return file;
  return (std::filesystem::path(config_path).parent_path() / file).lexically_normal().string();
}

// $CREDENTIALS_DIRECTORY/NAME: systemd's copy of the file that LoadCredential=NAME:PATH names,
// readable by the service alone.
std::string credential_path(const Setting& credential, const std::string& key,
                            const std::function<const char*(const char*)>& getenv) {
  const std::string& name = credential.text;
  if (name == "." || name == ".." || name.find('/') != std::string::npos)
    throw invalid_value(credential.origin, key, "must be a credential name, without '/' (got \"" + escape_controls(name) + "\")");
  const char* directory = getenv("CREDENTIALS_DIRECTORY");
  if (!directory || !*directory)
    throw invalid_value(credential.origin, key,
                        "$CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit with LoadCredential=" +
                            escape_controls(name) + ":PATH; outside systemd use the password_file option)");
  return (std::filesystem::path(directory) / name).string();
}

// The password in the file: one line, a trailing newline (CR LF too) dropped. An error names the
// option and the file, never a byte of what the file holds.
std::string read_secret(const std::string& secret_path, const std::string& origin, const std::string& key) {
  constexpr size_t kMaxPassword = 4096;
  auto unreadable = [&](const std::string& cause) {
    return invalid_value(origin, key, "cannot read " + escape_controls(secret_path) + ": " + cause);
  };
  auto unusable = [&](const std::string& what) { return invalid_value(origin, key, escape_controls(secret_path) + " " + what); };
  if (std::filesystem::is_directory(secret_path)) throw unreadable("is a directory");
  std::ifstream file(secret_path, std::ios::binary);
  if (!file) throw unreadable(std::strerror(errno));
  std::string password(kMaxPassword + 1, '\0');
  file.read(password.data(), static_cast<std::streamsize>(password.size()));
  if (file.bad()) throw unreadable(std::strerror(errno));
  password.resize(static_cast<size_t>(file.gcount()));
  if (password.size() > kMaxPassword) throw unusable("is larger than " + std::to_string(kMaxPassword) + " bytes: not a password");
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
  if (password.empty()) throw unusable("is empty");
  if (password.find_first_of("\r\n") != std::string::npos) throw unusable("holds more than one line");
  return password;
}

// As ssh and libpq do with keys and .pgpass: a password file is its owner's alone.
void warn_if_others_can_read(const std::string& secret_path, const std::string& key, std::vector<std::string>& warnings) {
  struct stat info {};
  if (stat(secret_path.c_str(), &info) != 0 || !(info.st_mode & (S_IRWXG | S_IRWXO))) return;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", info.st_mode & 07777);
  warnings.push_back("config: " + key + ": " + escape_controls(secret_path) + " is open to other users than its owner (mode " +
                     mode + "); run chmod 0600 " + escape_controls(secret_path) + ", or pass it with systemd's LoadCredential=");
}

}  // namespace

void read_password(std::map<std::string, Setting>& values, const std::string& section, const PasswordSources& sources,
                   std::vector<std::string>& warnings) {
  auto value = [&](const std::string& field) -> const Setting* {
    auto found = values.find(section + "." + field);
    return found == values.end() || found->second.text.empty() ? nullptr : &found->second;
  };
  const Setting* file = value("password_file");
  const Setting* credential = value("password_credential");
  if (!file && !credential) return;
  if (file && credential)
    throw invalid_value(credential->origin, section + ".password_credential",
                        "cannot be set together with " + section + ".password_file (" + file->origin + "); set one of them");
  std::string key = section + (file ? ".password_file" : ".password_credential");
  const Setting& source = file ? *file : *credential;
  std::string secret_path =
      file ? password_file_path(source.text, sources.config_path) : credential_path(source, key, sources.getenv);
  std::string password = read_secret(secret_path, source.origin, key);
  if (file) warn_if_others_can_read(secret_path, key, warnings);

  Setting& url = values.at(section + ".url");
  std::vector<std::string> urls = url.option->type == Type::url_list ? url.list : std::vector<std::string>{url.text};
  for (std::string& one : urls) {
    if (one.empty()) continue;
    std::string url_key = section + ".url";
    if (url_has_password(one))
      throw invalid_value(url.origin, url_key,
                          "has a password while " + key + " is set (" + source.origin + "); remove the password from the URL");
    if (!url_has_user(one))
      throw invalid_value(url.origin, url_key,
                          "names no user for the password of " + key + "; write the user into the URL (scheme://USER@host/...)");
    one = url_with_password(one, password);
  }
  if (url.option->type == Type::url_list) {
    url.list = urls;
    if (!urls.empty()) url.text = urls.front();
  } else {
    url.text = urls.front();
  }
  url.password_origin = file ? "file " + secret_path : "credential " + source.text;
}

}  // namespace outbox::config
