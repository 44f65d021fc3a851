// amqp::Connection's broker objects: declaring, binding, looking for, inspecting and deleting
// exchanges and queues (core/amqp.hpp). The rest of Connection is in core/amqp.cpp.
#include "core/amqp.hpp"
#include "core/amqp_wire.hpp"
#include "core/error.hpp"

namespace outbox::amqp {
namespace {

using wire::bytes;
using wire::kChannel;

}  // namespace

void Connection::declare_exchange(const std::string& name, const std::string& type, const std::string& alternate_exchange,
                                  const std::string& hash_header) {
  amqp_table_entry_t entries[2];
  int count = 0;
  auto add = [&](const char* key, const std::string& value) {
    if (value.empty()) return;
    entries[count].key = amqp_cstring_bytes(key);
    entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[count].value.value.bytes = bytes(value);
    ++count;
  };
  add("alternate-exchange", alternate_exchange);
  add("hash-header", hash_header);
  amqp_exchange_declare(state_, kChannel, bytes(name), bytes(type), 0, 1, 0, 0, amqp_table_t{count, entries});
  check_reply("declare exchange " + name);
}

void Connection::bind_exchange(const std::string& destination, const std::string& source, const std::string& routing_key) {
  amqp_exchange_bind(state_, kChannel, bytes(destination), bytes(source), bytes(routing_key), amqp_empty_table);
  check_reply("bind exchange " + destination + " to " + source + " with " + routing_key);
}

void Connection::declare_queue(const std::string& name, const QueueOptions& options) {
  amqp_table_entry_t entries[3];
  int count = 0;
  if (options.quorum) {
    entries[count].key = amqp_cstring_bytes("x-queue-type");
    entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[count].value.value.bytes = amqp_cstring_bytes("quorum");
    ++count;
  }
  if (!options.dead_letter_exchange.empty()) {
    entries[count].key = amqp_cstring_bytes("x-dead-letter-exchange");
    entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[count].value.value.bytes = bytes(options.dead_letter_exchange);
    ++count;
  }
  if (options.single_active_consumer) {
    entries[count].key = amqp_cstring_bytes("x-single-active-consumer");
    entries[count].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    entries[count].value.value.boolean = 1;
    ++count;
  }
  amqp_queue_declare(state_, kChannel, bytes(name), 0, options.durable ? 1 : 0, 0, 0, amqp_table_t{count, entries});
  check_reply("declare queue " + name);
}

void Connection::bind_queue(const std::string& queue, const std::string& exchange, const std::string& routing_key) {
  amqp_queue_bind(state_, kChannel, bytes(queue), bytes(exchange), bytes(routing_key), amqp_empty_table);
  check_reply("bind queue " + queue + " to " + exchange + " with " + routing_key);
}

bool Connection::found(const std::string& what) {
  try {
    check_reply(what);
    return true;
  } catch (const Error& error) {
    if (error.code() != ExitCode::data) throw;
  }
  // 404 closed the channel: confirm the close and open it again.
  amqp_channel_close_ok_t close_ok{};
  if (amqp_send_method(state_, kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) != AMQP_STATUS_OK)
    throw unavailable_error(role_ + " " + masked_node_ + ": " + what + ": the connection failed");
  amqp_channel_open(state_, kChannel);
  check_reply("open the channel again after: " + what);
  return false;
}

bool Connection::queue_exists(const std::string& name) {
  amqp_queue_declare(state_, kChannel, bytes(name), 1, 0, 0, 0, amqp_empty_table);
  return found("look for queue " + name);
}

bool Connection::exchange_exists(const std::string& name) {
  amqp_exchange_declare(state_, kChannel, bytes(name), amqp_cstring_bytes("topic"), 1, 0, 0, 0, amqp_empty_table);
  return found("look for exchange " + name);
}

std::pair<uint32_t, uint32_t> Connection::inspect_queue(const std::string& name) {
  amqp_queue_declare_ok_t* ok = amqp_queue_declare(state_, kChannel, bytes(name), 1, 0, 0, 0, amqp_empty_table);
  check_reply("inspect queue " + name);
  return {ok->message_count, ok->consumer_count};
}

void Connection::delete_unused_empty_queue(const std::string& name) {
  amqp_queue_delete(state_, kChannel, bytes(name), /*if_unused=*/1, /*if_empty=*/1);
  try {
    check_reply("delete queue " + name);
  } catch (const Error& error) {
    if (std::string(error.what()).find("NOT_IMPLEMENTED") != std::string::npos) throw Error(ExitCode::software, error.what());
    if (error.code() != ExitCode::config) throw;
    throw Error(ExitCode::tempfail, std::string(error.what()) + " (it has a consumer or messages again)");
  }
}

void Connection::delete_queue(const std::string& name) {
  amqp_queue_delete(state_, kChannel, bytes(name), 0, 0);
  check_reply("delete queue " + name);
}

void Connection::delete_exchange(const std::string& name) {
  amqp_exchange_delete(state_, kChannel, bytes(name), 0);
  check_reply("delete exchange " + name);
}

uint32_t Connection::purge_queue(const std::string& name) {
  amqp_queue_purge_ok_t* ok = amqp_queue_purge(state_, kChannel, bytes(name));
  check_reply("purge queue " + name);
  return ok->message_count;
}

}  // namespace outbox::amqp
