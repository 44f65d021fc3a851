#pragma once
// A process's CPU for the benches, read as the metrics read their own (metrics::parse_process_stat).
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include "core/metrics.hpp"

namespace outbox::bench {

// utime + stime of a process on this host, in seconds; 0 if it is gone.
inline double process_cpu_seconds(long pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto stat = metrics::parse_process_stat(text, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE));
  return stat ? stat->cpu_seconds : 0;
}

}  // namespace outbox::bench
