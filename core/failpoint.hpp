#pragma once
// Test-only fault injection. OUTBOX_FAILPOINTS="name=action,..." where action is
//   error  throw an Error (the caller's normal failure path runs)
//   crash  SIGKILL this process at once (no cleanup, no flush: like kill -9 at that point)
//   sleep:MS  wait MS milliseconds on the calling thread (a slow step, for a test of what waits for it)
// Unset in production; checking a failpoint costs one branch when the variable is not set.
#include <string_view>

namespace outbox {

void failpoint(std::string_view name);

}  // namespace outbox
