#pragma once
// One assertion for "this call fails with this exit code and exactly this message".
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"

namespace outbox::testing {

// Runs `body`; a test failure unless it throws outbox::Error with `code` and `message`.
template <typename Body>
void expect_error(Body body, ExitCode code, const std::string& message) {
  try {
    body();
    ADD_FAILURE() << "no error; expected: " << message;
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    EXPECT_EQ(std::string(error.what()), message);
  }
}

}  // namespace outbox::testing
