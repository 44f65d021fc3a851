// The batch's parameters of the apply statement (replicate/apply_sql.hpp): built on the worker
// thread while the replica waits, so every step here counts.
#include <algorithm>
#include <functional>
#include <string_view>

#include "core/pg_array.hpp"
#include "replicate/apply_sql.hpp"

namespace outbox::replicate {

namespace {

// The row an event writes, as newest_of_rows tells rows apart: its aggregate, its table, and its
// key as Event::row_key has it (a JSON kind tag, then the value), or "s" and the aggregate id when
// the payload has no key. A key that is an object or array ("x": the write fails on it) is a row
// of its own: `own` is then the event's index. Views into the batch's events, which outlive it.
struct RowOfEvent {
  std::string_view aggregate_type, aggregate_id;
  int table;
  char kind;
  std::string_view key;
  size_t own;
  bool operator==(const RowOfEvent&) const = default;
};

struct RowOfEventHash {
  size_t operator()(const RowOfEvent& row) const {
    std::hash<std::string_view> text;
    size_t hash = text(row.aggregate_type);
    for (size_t part :
         {text(row.aggregate_id), text(row.key), static_cast<size_t>(row.table), static_cast<size_t>(row.kind), row.own})
      hash ^= part + 0x9e3779b97f4a7c15ULL + (hash << 6) + (hash >> 2);
    return hash;
  }
};

// The slot of an open-addressing table (linear probing; at least twice as many slots as entries,
// so there is always an empty one, -1) that holds the entry `same` recognizes, or the empty one
// where it goes.
template <typename Same>
int& slot_of(std::vector<int>& slots, size_t hash, Same same) {
  size_t mask = slots.size() - 1;
  for (size_t at = hash & mask;; at = (at + 1) & mask)
    if (slots[at] < 0 || same(slots[at])) return slots[at];
}

size_t slots_for(size_t entries) {
  size_t slots = 16;
  while (slots < 2 * entries) slots <<= 1;
  return slots;
}

}  // namespace

// Two tables of item indexes, not node-based sets and maps: the worker builds this while the
// replica waits for the batch, and a node per event was a third of that time.
std::vector<int> newest_of_rows(const std::vector<Item*>& items, const std::vector<int>& table_of_mapping) {
  std::vector<int> w(items.size(), 0);
  std::vector<int> ids(slots_for(items.size()), -1);
  std::vector<int> newest(slots_for(items.size()), -1);  // row -> index of its newest event so far
  std::vector<RowOfEvent> row_of(items.size());
  std::hash<std::string_view> text;
  auto event_of = [&items](int i) -> const Event& { return *items[static_cast<size_t>(i)]->checked.event; };
  for (size_t i = 0; i < items.size(); ++i) {
    const Event& event = *items[i]->checked.event;
    if (event.heartbeat || event.mapping < 0) continue;
    int& id = slot_of(ids, text(event.event_id), [&](int j) { return event_of(j).event_id == event.event_id; });
    if (id >= 0) {
      w[i] = -1;
      continue;
    }
    id = static_cast<int>(i);
    RowOfEvent& row = row_of[i];
    row = RowOfEvent{event.aggregate_type, event.aggregate_id, table_of_mapping[static_cast<size_t>(event.mapping)], 's',
                     event.aggregate_id,   std::string::npos};
    if (event.row_key) {
      std::string_view tagged = *event.row_key;
      row.kind = tagged.empty() ? '\0' : tagged.front();
      row.key = tagged.empty() ? tagged : tagged.substr(1);
      if (tagged == "x") row.own = i;
    }
    int& found = slot_of(newest, RowOfEventHash{}(row), [&](int j) { return row_of[static_cast<size_t>(j)] == row; });
    if (found < 0) {
      w[i] = 1;
      found = static_cast<int>(i);
    } else if (event.version >= event_of(found).version) {
      w[static_cast<size_t>(found)] = 0;
      w[i] = 1;
      found = static_cast<int>(i);
    }
  }
  return w;
}

namespace {

// batch_columns, with the payloads of the items `left_out` marks sent as null.
BatchColumns columns_of(const std::vector<Item*>& items, const Item* position_of, const std::vector<int>& table_of_mapping,
                        const std::vector<bool>& left_out) {
  using Element = pg::BinaryArray::Element;
  pg::BinaryArray ids(Element::uuid), aggregate_types(Element::text), aggregate_ids(Element::text), versions(Element::int8),
      mappings(Element::int4), tables(Element::int4), positions(Element::int8), created_at(Element::int8), newest(Element::int4);
  size_t count = items.size() + 1, payload_bytes = 2;
  for (const Item* item : items) payload_bytes += item->message->body.size() + 1;
  for (pg::BinaryArray* array : {&ids, &versions, &positions, &created_at}) array->reserve(count * 20);
  for (pg::BinaryArray* array : {&mappings, &tables, &newest}) array->reserve(count * 8);
  aggregate_types.reserve(count * 32);
  aggregate_ids.reserve(count * 48);
  auto add_optional = [](pg::BinaryArray& array, const std::optional<long long>& value) {
    if (value)
      array.add_int8(*value);
    else
      array.add_null();
  };
  BatchColumns columns;
  columns.payloads.reserve(payload_bytes + 2);
  columns.payloads += '[';
  std::vector<int> w = newest_of_rows(items, table_of_mapping);
  // The position entry (m = -2) is last, so the statement moves the position to it; nothing else
  // reads it.
  auto append = [&](bool first, const Item& item, bool position_only, int newest_of_row, bool payload_left_out) {
    const Event& event = *item.checked.event;
    int mapping = position_only ? -2 : event.heartbeat ? -1 : event.mapping;
    ids.add_uuid(event.event_id);
    aggregate_types.add_text(event.aggregate_type);
    aggregate_ids.add_text(event.aggregate_id);
    versions.add_int8(event.version);
    mappings.add_int4(mapping);
    tables.add_int4(mapping >= 0 ? table_of_mapping[static_cast<size_t>(mapping)] : -1);
    add_optional(positions, event.position);
    add_optional(created_at, event.created_at_us);
    newest.add_int4(newest_of_row);
    // The body is one JSON object (replicate/event.hpp), as it came.
    if (!first) columns.payloads += ',';
    columns.payloads += position_only      ? std::string_view("{}")
                        : payload_left_out ? std::string_view("null")
                                           : std::string_view(item.message->body);
  };
  for (size_t i = 0; i < items.size(); ++i) append(i == 0, *items[i], false, w[i], left_out[i]);
  if (position_of) append(items.empty(), *position_of, true, 0, false);
  columns.payloads += ']';
  columns.ids = ids.bytes();
  columns.aggregate_types = aggregate_types.bytes();
  columns.aggregate_ids = aggregate_ids.bytes();
  columns.versions = versions.bytes();
  columns.mappings = mappings.bytes();
  columns.tables = tables.bytes();
  columns.positions = positions.bytes();
  columns.created_at = created_at.bytes();
  columns.newest = newest.bytes();
  return columns;
}

}  // namespace

BatchColumns batch_columns(const std::vector<Item*>& items, const Item* position_of, const std::vector<int>& table_of_mapping) {
  return columns_of(items, position_of, table_of_mapping, std::vector<bool>(items.size(), false));
}

std::optional<BatchColumns> typed_batch_columns(const std::vector<Item*>& items, const Item* position_of,
                                                const std::vector<int>& table_of_mapping,
                                                const std::vector<ReplicaTable>& tables) {
  // Each upsert's column texts, by table (-1: not an upsert of a typed table).
  std::vector<int> table_of_item(items.size(), -1);
  std::vector<std::vector<std::optional<std::string>>> texts(items.size());
  std::vector<bool> left_out(items.size(), false);
  for (size_t i = 0; i < items.size(); ++i) {
    const Event& event = *items[i]->checked.event;
    if (event.heartbeat || event.mapping < 0) continue;
    size_t t = static_cast<size_t>(table_of_mapping[static_cast<size_t>(event.mapping)]);
    const ReplicaTable& table = tables[t];
    if (std::find(table.upserts.begin(), table.upserts.end(), event.mapping) == table.upserts.end()) continue;
    if (!table.typed_upserts()) return std::nullopt;
    std::optional<std::vector<std::optional<std::string>>> read = column_texts(items[i]->message->body, table.columns);
    if (!read) return std::nullopt;
    texts[i] = std::move(*read);
    table_of_item[i] = static_cast<int>(t);
    left_out[i] = true;
  }
  BatchColumns columns = columns_of(items, position_of, table_of_mapping, left_out);
  size_t entries = items.size() + (position_of ? 1 : 0);
  for (size_t t = 0; t < tables.size(); ++t) {
    if (!tables[t].typed_upserts()) continue;
    for (size_t c = 0; c < tables[t].columns.size(); ++c) {
      pg::BinaryArray array(pg::BinaryArray::Element::text);
      array.reserve(entries * 24);
      for (size_t i = 0; i < entries; ++i) {
        if (i < items.size() && table_of_item[i] == static_cast<int>(t) && texts[i][c])
          array.add_text(*texts[i][c]);
        else
          array.add_null();
      }
      columns.typed.push_back(array.bytes());
    }
  }
  return columns;
}

}  // namespace outbox::replicate
