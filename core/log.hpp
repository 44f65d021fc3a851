#pragma once
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace outbox::log {

// Configures the default logger (stderr): level trace..error, format "text" or "json".
// Safe to call again on reload. When stderr is the journal (is_journal_stream), each line starts
// with its priority for journald (journal_prefix), so that `journalctl -p warning` selects by level.
void setup(const std::string& level, const std::string& format);
// Whether `fd` is the stream systemd connected to the journal: $JOURNAL_STREAM ("DEVICE:INODE", as
// systemd sets it for a unit with StandardError=journal) names that stream's device and inode. A
// child whose stderr was redirected elsewhere inherits the variable, so the descriptor is compared.
bool is_journal_stream(const char* journal_stream, int fd);
// sd-daemon's syslog prefix of a level, which journald strips and keeps as the line's priority:
// "<3>" (err) for error, "<4>" (warning) for warn, "<6>" (info), "<7>" (debug) for debug and trace.
std::string_view journal_prefix(spdlog::level::level_enum level);
// A logger whose name carries the context of its lines, e.g. "relay public.outbox".
std::shared_ptr<spdlog::logger> get(const std::string& context);
// Escapes a string for a JSON string literal (without the quotes).
std::string json_escape(std::string_view text);

}  // namespace outbox::log
