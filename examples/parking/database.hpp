#pragma once
// Where the parking commands read and write: the primary or a replica's read model, in one
// transaction each, and the staleness bound of a replica read. No CLI here.
#include <pqxx/pqxx>
#include <string>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/pg.hpp"

namespace outbox::parking {

struct Source {
  std::string role;  // "primary", "replica main"
  std::string url;
};

// --from primary | replica (the replica named main) | replica:NAME. Error(usage) for another
// word, Error(config) for a replica that is not configured.
Source resolve_source(const config::Config& config, const std::string& from);
Source primary_source(const config::Config& config);

// Runs `body` in a transaction of the given kind on the database and commits, mapping server
// errors to one-line errors with the database's name: a missing table is Error(config) (run
// 'outbox migrate'), a rejected row Error(data), a lost connection Error(unavailable), and a
// commit whose outcome is unknown Error(unavailable) that says so.
template <typename Transaction, typename Body>
auto with_transaction(const Source& source, Body body) {
  auto connection = pg::connect(source.url, source.role);
  try {
    Transaction tx(*connection);
    auto result = body(tx);
    tx.commit();
    return result;
  } catch (const Error&) {
    throw;
  } catch (const pqxx::undefined_table& error) {
    throw config_error(source.role + ": parking_slots or the outbox table does not exist; run 'outbox migrate'");
  } catch (const pqxx::integrity_constraint_violation& error) {
    throw data_error(source.role + ": rejected by the database: " + first_line(error.what()));
  } catch (const pqxx::in_doubt_error& error) {
    // The commit may have happened: say so, and how to find out, instead of calling it a bug.
    throw unavailable_error(source.role +
                            ": the connection was lost while committing; the change may or may not have been made (check "
                            "with --from primary)");
  } catch (const std::exception& error) {
    throw Error(pg::is_connection_error(error) ? ExitCode::unavailable : ExitCode::software,
                source.role + ": " + first_line(error.what()));
  }
}

// --max-staleness: refuses (Error(tempfail), one line) to answer from a replica that is further
// behind than `limit` by the measure of `outbox lag` (ops/lag.hpp; the relay's backlog and the
// replica's stage, without the broker's). The primary is never stale. Error(usage) for a limit
// that is not a duration; a replica that cannot be read is Error(unavailable), one whose schema
// is missing Error(config).
void require_fresh(const config::Config& config, const std::string& from, const std::string& limit);

}  // namespace outbox::parking
