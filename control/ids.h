// Identifiers in Docker's shape: 64 lowercase hex characters.
#pragma once

#include <string>

namespace weft::control {

std::string random_id();
// RFC 3339 UTC timestamp of now, with nanoseconds like Docker's "Created".
std::string now_rfc3339();

}  // namespace weft::control
