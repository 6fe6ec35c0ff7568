// Test helpers: TCP clients opened inside a network namespace, for tests that
// send real traffic through the load balancer (eBPF and nftables).
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "dataplane/address.h"
#include "dataplane/netns.h"

namespace weft::testing {

inline sockaddr_in socket_address(dataplane::Ipv4 ip, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(ip.value);
  return sa;
}

// Waits for `fd` to become readable and reads what is there. nullopt on
// timeout; the errno in `err` when the read fails (e.g. ECONNRESET).
inline std::optional<std::string> read_some(int fd, std::chrono::milliseconds timeout, int* err = nullptr) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n < 0) {
    if (err) *err = errno;
    return std::string();
  }
  if (err) *err = 0;
  return std::string(buf, static_cast<std::size_t>(n));
}

// A TCP connection from inside a namespace (from `sport` when given);
// error() is 0 or the bind's or connect's errno. The test servers greet
// with their name on a line, then echo.
class TcpClient {
 public:
  TcpClient(const dataplane::NetnsHandle& ns, dataplane::Ipv4 ip, std::uint16_t port, std::uint16_t sport = 0)
      : fd_(dataplane::open_socket_in(ns, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    timeval tv{2, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect()
    if (sport != 0) {
      int one = 1;
      ::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      auto local = socket_address(dataplane::Ipv4{}, sport);
      if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) error_ = errno;
    }
    auto sa = socket_address(ip, port);
    if (error_ == 0 && ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) error_ = errno;
  }
  // An address in host byte order, as the tests' ip4() helpers give it.
  TcpClient(const dataplane::NetnsHandle& ns, std::uint32_t ip, std::uint16_t port, std::uint16_t sport = 0)
      : TcpClient(ns, dataplane::Ipv4{ip}, port, sport) {}

  int error() const { return error_; }
  int fd() const { return fd_.get(); }

  // The server's first line: the backend's name, without the line end.
  std::string greeting() {
    std::string got;
    while (got.find('\n') == std::string::npos) {
      auto part = read_some(fd_.get(), std::chrono::seconds(2));
      if (!part || part->empty()) break;
      got += *part;
    }
    while (!got.empty() && (got.back() == '\n' || got.back() == '\r')) got.pop_back();
    return got;
  }
  // Sends `text` and reads its echo (the servers echo after the greeting).
  std::optional<std::string> echo(const std::string& text, int* err = nullptr) {
    if (::send(fd_.get(), text.data(), text.size(), MSG_NOSIGNAL) < 0) {
      if (err) *err = errno;
      return std::string();
    }
    return read_some(fd_.get(), std::chrono::seconds(2), err);
  }

 private:
  dataplane::UniqueFd fd_;
  int error_ = 0;
};

}  // namespace weft::testing
