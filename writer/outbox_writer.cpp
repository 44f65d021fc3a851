#include "writer/outbox_writer.hpp"

#include "core/failpoint.hpp"
#include "core/pg.hpp"

namespace outbox {
namespace {

// The arguments of json_build_object: each key and value a parameter cast to its JSON type.
template <typename Add>
void append_fields(std::string& sql, const std::vector<JsonField>& payload, Add& add) {
  bool first = true;
  for (const JsonField& field : payload) {
    if (!first) sql += ", ";
    first = false;
    sql += add(field.key) + "::text, ";
    if (std::holds_alternative<std::nullptr_t>(field.value))
      sql += add("", true) + "::text";
    else if (auto* text = std::get_if<std::string>(&field.value))
      sql += add(*text) + "::text";
    else if (auto* number = std::get_if<long long>(&field.value))
      sql += add(std::to_string(*number)) + "::bigint";
    else
      sql += add(std::get<bool>(field.value) ? "true" : "false") + "::boolean";
  }
}

}  // namespace

std::string insert_event(pqxx::transaction_base& tx, const OutboxEvent& event, std::string_view table) {
  failpoint("outbox.event_insert");
  // Parameters as text (nullptr: SQL NULL); each is cast in the statement to its JSON type.
  std::vector<std::string> storage;
  std::vector<bool> is_null;
  auto add = [&](std::string text, bool null = false) {
    storage.push_back(std::move(text));
    is_null.push_back(null);
    return "$" + std::to_string(storage.size());
  };
  std::string sql = "INSERT INTO " + pg::quote_qualified(table) +
                    " (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload)"
                    " VALUES (gen_random_uuid(), " +
                    add(event.aggregate_type) + ", " + add(event.aggregate_id) + ", " +
                    add(std::to_string(event.aggregate_version)) + "::bigint, " + add(event.event_type) + ", ";
  if (!event.payload_json.empty()) {
    sql += add(event.payload_json) + "::json) RETURNING event_id";
  } else {
    sql += "json_build_object(";
    append_fields(sql, event.payload, add);
    sql += ")) RETURNING event_id";
  }
  std::vector<const char*> params;
  for (size_t i = 0; i < storage.size(); ++i) params.push_back(is_null[i] ? nullptr : storage[i].c_str());
  pqxx::result result = pg::exec_cached(tx, sql, pqxx::prepare::make_dynamic_params(params));
  return result.at(0).at(0).as<std::string>();
}

}  // namespace outbox
