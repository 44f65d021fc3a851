#pragma once
// A session of the relay's beside its own, used off the event loop by one loop::Worker: the marks'
// vacuum (relay/mark_vacuum.hpp) and the retention (relay/retention_worker.hpp). It is opened at
// its first use on the worker thread and again after a failure (reset), and the loop thread can
// cancel the statement it runs, which the owner does before its worker is joined.
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>

namespace outbox::relay {

class SideSession {
 public:
  // `setup` runs once on each new connection (session settings), if set.
  SideSession(std::string url, std::string role, std::string application_name, std::function<void(pqxx::connection&)> setup = {});
  // On the worker thread: the open connection, opened (and set up) when there is none.
  pqxx::connection& get();
  // On the worker thread, after a failure: the next get() opens a new session (the old one may be
  // broken, and its session locks go with it).
  void reset();
  // On the loop thread: cancels the statement that runs, if there is a connection.
  void cancel();

 private:
  std::string url_, role_, application_name_;
  std::function<void(pqxx::connection&)> setup_;
  // Written by the worker thread only, under the mutex; the loop thread reads it under the mutex.
  std::mutex mutex_;
  std::unique_ptr<pqxx::connection> connection_;
};

}  // namespace outbox::relay
