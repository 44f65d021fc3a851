#pragma once
// `outbox config show --json` (core/config_show.cpp; the text form is config::show in core/config.hpp).
#include <string>

#include "core/config.hpp"

namespace outbox::config {

// Every effective value as one JSON document: {"config_file": path or null, "options": [{"key",
// "value", "source", "origin", and for a URL whose password came from a file or a credential,
// "password_from"}, ...]}; passwords masked; newline-terminated.
std::string show_json(const Config& config);

}  // namespace outbox::config
