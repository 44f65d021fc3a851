#pragma once
// What `outbox verify` and `outbox resync --all` set up before a compare (ops/verify.hpp): both
// connections, their schemas checked to be current and their sessions prepared, the mapped tables
// of replicate.mappings and the options.
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "ops/verify.hpp"

namespace outbox::verify {

struct Setup {
  std::unique_ptr<pqxx::connection> primary, replica;
  std::vector<TableSpec> tables;  // each distinct (table, key column) of replicate.mappings
  Options options;
};

// Error(config) for an unknown replica or a schema that is not current, Error(usage) for a
// --timeout that is not a positive duration, Error(unavailable) when a database cannot be reached.
// `application` names the connections in pg_stat_activity ("outbox verify").
Setup set_up(const config::Config& config, const std::string& replica, const std::string& timeout,
             const std::string& application);

}  // namespace outbox::verify
