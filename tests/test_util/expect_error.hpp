// Checks that a call fails the way a user should see it: with a haste::Error whose message
// contains the given words (so a test also pins down that the message is helpful).
#pragma once

#include <haste/error.hpp>

#include <gtest/gtest.h>

#include <string>

namespace haste::test_util {

template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace haste::test_util
