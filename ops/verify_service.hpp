#pragma once
// `outbox verify --service NAME`: is a service database ready for its relay and its consumer, and is
// nothing stuck? A service has no read model that mirrors another database, so there is nothing to
// compare row by row; verify checks what a service's deployment needs instead. No CLI here.
//
//   schema          the embedded `service` set is applied and unchanged (outbox migrate --service)
//   own migrations  every file of services.NAME.migrations is applied and unchanged (when set)
//   handlers        each [[services.NAME.handlers]] function exists as f(jsonb) in the database,
//                   each [[services.NAME.deadlines]] function as f()
//   relay           no outbox row of the service is parked (outbox failed list --relay)
//   consumer        no event is parked or waiting for the consumer (outbox failed list --consumer)
//   queue           outbox.consumer.NAME exists (a passive declare), with its ready messages and
//                   consumers; a service with handlers needs binding_keys
// What it does not check: the queue's bindings (AMQP cannot list them; `outbox migrate` and
// `outbox consume` declare them from binding_keys; `rabbitmqctl list_bindings` shows them).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace outbox::verify {

struct ServiceCheck {
  std::string name;    // "schema", "own migrations", "handlers", "relay", "consumer", "queue"
  bool ok = true;      // false: a problem an operator must look at
  std::string detail;  // one line: what was found
};

struct ServiceReport {
  std::string service;
  std::vector<ServiceCheck> checks;
  bool ok() const;
};

// Error(config) for a service that is not configured; Error(unavailable) when its database or the
// broker cannot be reached (the message names which).
ServiceReport verify_service(const config::Config& config, const std::string& service);

// One line per check ("ok       schema: at version 1001") and a summary line.
std::string render_service_text(const ServiceReport& report);
nlohmann::ordered_json render_service_json(const ServiceReport& report);

}  // namespace outbox::verify
