// SPDX-License-Identifier: Apache-2.0
// How the library reports bad input: std::invalid_argument whose message names the entry point,
// the parameter, its value and what was expected.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sparse_attention::detail {

template <class Value>
[[noreturn]] void throw_invalid_argument(std::string_view where, std::string_view parameter,
                                         const Value& value, std::string_view expected) {
  std::ostringstream message;
  message << "sparse_attention::" << where << ": " << parameter << " = " << value
          << " is invalid; expected " << expected;
  throw std::invalid_argument(message.str());
}

// Checks one condition; the message is built only when it fails.
template <class Value>
void require(bool ok, std::string_view where, std::string_view parameter, const Value& value,
             std::string_view expected) {
  if (!ok) throw_invalid_argument(where, parameter, value, expected);
}

}  // namespace sparse_attention::detail
