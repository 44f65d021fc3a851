#pragma once
#include <string_view>
#include <vector>

namespace outbox::migrate {

struct EmbeddedFile {
  std::string_view target;  // "primary", "replica" or "service"
  std::string_view name;    // "0001_parking_and_outbox.sql"
  std::string_view sql;
};

// Every migration file under migrate/sql/, sorted by target and name (generated at build time).
const std::vector<EmbeddedFile>& embedded_files();

}  // namespace outbox::migrate
