#include "relay/side_session.hpp"

#include "core/pg.hpp"

namespace outbox::relay {

SideSession::SideSession(std::string url, std::string role, std::string application_name,
                         std::function<void(pqxx::connection&)> setup)
    : url_(std::move(url)), role_(std::move(role)), application_name_(std::move(application_name)), setup_(std::move(setup)) {}

pqxx::connection& SideSession::get() {
  if (!connection_) {
    auto opened = pg::connect(url_, role_, application_name_);
    if (setup_) setup_(*opened);
    std::lock_guard lock(mutex_);
    connection_ = std::move(opened);
  }
  return *connection_;
}

void SideSession::reset() {
  std::lock_guard lock(mutex_);
  connection_.reset();
}

void SideSession::cancel() {
  std::lock_guard lock(mutex_);
  if (!connection_) return;
  try {
    connection_->cancel_query();
  } catch (const std::exception&) {
    // The statement then runs to its end, which the worker's owner waits for.
  }
}

}  // namespace outbox::relay
