#include "examples/parking/parking.hpp"

#include <openssl/rand.h>

#include <cstdio>

#include "core/error.hpp"
#include "core/escape.hpp"
#include "core/failpoint.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/utf8.hpp"

namespace outbox::parking {
namespace {

constexpr const char* kColumns = "uuid::text, name, status, version";

std::string json_quoted(std::string_view text) { return "\"" + log::json_escape(text) + "\""; }

Slot slot_of(const pqxx::row& row) {
  return {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(), row[3].as<long long>()};
}

std::vector<JsonField> row_payload(const Slot& slot) {
  return {{"uuid", slot.uuid}, {"name", slot.name}, {"status", slot.status}, {"version", slot.version}};
}

void write_event(pqxx::transaction_base& tx, const Slot& slot, std::string event_type, std::vector<JsonField> payload,
                 std::string_view outbox_table) {
  failpoint("parking.before_event_insert");
  insert_event(tx, {std::string(kAggregateType), slot.uuid, slot.version, std::move(event_type), std::move(payload), ""},
               outbox_table);
}

// A space as a reader sees one: ASCII space, the Unicode space separators (Zs), the line and
// paragraph separators, and the zero-width spaces and joiners that show nothing at all.
bool is_blank(char32_t point) {
  return point == 0x20 || point == 0xa0 || point == 0x1680 || (point >= 0x2000 && point <= 0x200d) || point == 0x2028 ||
         point == 0x2029 || point == 0x202f || point == 0x205f || point == 0x2060 || point == 0x3000 || point == 0xfeff;
}

}  // namespace

std::optional<size_t> utf8_length(std::string_view text) {
  size_t count = 0;
  char32_t point;
  for (size_t at = 0; at < text.size(); ++count) {
    size_t length = utf8::decode(text, at, point);
    if (length == 0) return std::nullopt;
    at += length;
  }
  return count;
}

void validate_name(std::string_view name) {
  if (name.empty()) throw data_error("invalid name: must not be empty");
  size_t count = 0;
  bool blank = true;
  char32_t point;
  for (size_t at = 0; at < name.size(); ++count) {
    size_t length = utf8::decode(name, at, point);
    if (length == 0) throw data_error("invalid name: not valid UTF-8 (byte " + std::to_string(at + 1) + ")");
    if (point < 0x20 || (point >= 0x7f && point <= 0x9f)) {
      char code[16];
      std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(point));
      throw data_error(std::string("invalid name: contains the control character ") + code);
    }
    blank = blank && is_blank(point);
    at += length;
  }
  if (blank) throw data_error("invalid name: only spaces (a name must show at least one character)");
  if (count > kMaxNameLength)
    throw data_error("invalid name: " + std::to_string(count) + " characters, at most " + std::to_string(kMaxNameLength) +
                     " allowed");
}

void validate_status(std::string_view status) {
  if (status != "available" && status != "blocked" && status != "reserved")
    throw data_error("invalid status " + json_quoted(status) + ": must be available, blocked or reserved");
}

std::string normalize_uuid(std::string_view uuid) {
  bool ok = uuid.size() == 36;
  std::string out;
  for (size_t i = 0; ok && i < uuid.size(); ++i) {
    char c = uuid[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      ok = c == '-';
    } else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
    } else if (c >= 'A' && c <= 'F') {
      c = static_cast<char>(c - 'A' + 'a');
    } else {
      ok = false;
    }
    out += c;
  }
  if (!ok) throw data_error("invalid uuid " + json_quoted(uuid) + ": must look like 3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b");
  return out;
}

std::string random_uuid() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw Error(ExitCode::software, "random_uuid: OpenSSL RAND_bytes failed");
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 15];
  }
  return out;
}

std::string json_line(const Slot& slot) {
  return "{\"uuid\": " + json_quoted(slot.uuid) + ", \"name\": " + json_quoted(slot.name) +
         ", \"status\": " + json_quoted(slot.status) + "}";
}

std::string details(const Slot& slot) {
  // A replica's row may hold what no command would write (an edit by hand, a forged event):
  // escaped, so that a name cannot add a line such as "status: reserved".
  return "uuid:   " + escape_controls(slot.uuid) + "\nname:   " + escape_controls(slot.name) +
         "\nstatus: " + escape_controls(slot.status) + "\n";
}

Slot create(pqxx::transaction_base& tx, std::string_view name, std::string_view status, std::string_view outbox_table) {
  validate_name(name);
  validate_status(status);
  Slot slot = slot_of(pg::exec_cached(tx,
                                      std::string("INSERT INTO parking_slots (uuid, name, status, version) "
                                                  "VALUES (gen_random_uuid(), $1, $2, 1) RETURNING ") +
                                          kColumns,
                                      std::string(name), std::string(status))
                          .at(0));
  write_event(tx, slot, "parking.create", row_payload(slot), outbox_table);
  return slot;
}

Slot update(pqxx::transaction_base& tx, std::string_view uuid, const std::optional<std::string>& name,
            const std::optional<std::string>& status, std::string_view outbox_table) {
  std::string key = normalize_uuid(uuid);
  if (name) validate_name(*name);
  if (status) validate_status(*status);
  if (!name && !status) throw usage_error("update_parking_slot: give --name or --status (or both)");
  // UPDATE locks the row; a concurrent update waits and then sees the new version.
  pqxx::result result =
      pg::exec_cached(tx,
                      std::string("UPDATE parking_slots SET name = coalesce($2, name), status = coalesce($3, status), "
                                  "version = version + 1 WHERE uuid = $1::uuid RETURNING ") +
                          kColumns,
                      key, name ? name->c_str() : nullptr, status ? status->c_str() : nullptr);
  if (result.empty()) throw data_error("parking slot " + key + " not found");
  Slot slot = slot_of(result[0]);
  write_event(tx, slot, "parking.update", row_payload(slot), outbox_table);
  return slot;
}

Slot remove(pqxx::transaction_base& tx, std::string_view uuid, std::string_view outbox_table) {
  std::string key = normalize_uuid(uuid);
  pqxx::result result =
      tx.exec_params("DELETE FROM parking_slots WHERE uuid = $1::uuid RETURNING uuid::text, name, status, version + 1", key);
  if (result.empty()) throw data_error("parking slot " + key + " not found");
  Slot slot = slot_of(result[0]);
  write_event(tx, slot, "parking.delete", {{"uuid", slot.uuid}, {"version", slot.version}}, outbox_table);
  return slot;
}

std::vector<Slot> list(pqxx::transaction_base& tx) {
  std::vector<Slot> slots;
  for (const auto& row : tx.exec(std::string("SELECT ") + kColumns + " FROM parking_slots ORDER BY name, uuid"))
    slots.push_back(slot_of(row));
  return slots;
}

std::optional<Slot> find(pqxx::transaction_base& tx, std::string_view uuid) {
  pqxx::result result =
      tx.exec_params(std::string("SELECT ") + kColumns + " FROM parking_slots WHERE uuid = $1::uuid", normalize_uuid(uuid));
  if (result.empty()) return std::nullopt;
  return slot_of(result[0]);
}

}  // namespace outbox::parking
