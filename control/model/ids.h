// Identifiers in Docker's shape: 64 lowercase hex characters.
#pragma once

#include <string>
#include <string_view>

namespace weft::control {

std::string random_id();
// The first 12 characters, as Docker shows IDs (and as weft names a
// network's namespace file); the whole id when it is shorter.
std::string short_id(std::string_view id);
// RFC 3339 UTC timestamp of now, with nanoseconds like Docker's "Created".
std::string now_rfc3339();

}  // namespace weft::control
