#include "control/model/ids.h"

#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <ctime>
#include <stdexcept>

#include <fmt/format.h>

namespace weft::control {

std::string random_id() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("no randomness available for an identifier");
  std::string id;
  id.reserve(64);
  for (unsigned char b : bytes) id += fmt::format("{:02x}", b);
  return id;
}

std::string short_id(std::string_view id) { return std::string(id.substr(0, 12)); }

std::string now_rfc3339() {
  const auto now = std::chrono::system_clock::now();
  const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(now);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now - seconds).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:09d}Z", buf, nanos);
}

}  // namespace weft::control
