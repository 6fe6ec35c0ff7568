// Helpers for the DNS tests: a server on 127.0.0.1 with random ports on its
// own io thread, `dig` against it, a dnsmasq upstream, hand-made packets.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dns/server.h"
#include "dns/static_name_view.h"

namespace weft::dns::testing {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

inline std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return out;
  std::array<char, 4096> chunk{};
  while (std::size_t n = std::fread(chunk.data(), 1, chunk.size(), pipe)) out.append(chunk.data(), n);
  ::pclose(pipe);
  return out;
}

inline bool have(const std::string& program) {
  return run("command -v " + program + " >/dev/null && echo yes").find("yes") != std::string::npos;
}

// A port free on 127.0.0.1 for both UDP and TCP (racy, as such things are).
inline uint16_t free_port() {
  asio::io_context io;
  for (;;) {
    udp::socket u(io, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));
    const uint16_t port = u.local_endpoint().port();
    boost::system::error_code ec;
    tcp::acceptor t(io);
    t.open(tcp::v4());
    t.bind(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port), ec);
    if (!ec) return port;
  }
}

// A Server on its own thread. Sockets are added before the thread starts.
class ServerHarness {
 public:
  ServerHarness(const NameView& view, ResponderConfig responder, ForwarderConfig forwarder, ServerLimits limits = {})
      : server_(std::make_unique<Server>(io_, view, responder, std::move(forwarder), limits)) {}
  ~ServerHarness() {
    asio::post(io_, [this] { server_->stop(); });
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  // Listens on 127.0.0.1 (UDP and TCP, same port) for the context.
  // The UDP port is the kernel's pick; the same TCP port may be taken (by a
  // parallel test's connection, say): then another pick.
  uint16_t listen(const std::string& context) {
    const auto address = asio::ip::make_address_v4("127.0.0.1");
    for (int attempt = 0;; ++attempt) {
      udp::socket u(io_, udp::endpoint(address, 0));
      const uint16_t port = u.local_endpoint().port();
      tcp::acceptor t(io_);
      boost::system::error_code ec;
      t.open(tcp::v4(), ec);
      if (!ec) t.bind(tcp::endpoint(address, port), ec);
      if (!ec) t.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        if (attempt < 50) continue;
        throw boost::system::system_error(ec, "bind a TCP port beside the UDP one");
      }
      server_->add_udp(std::move(u), context);
      server_->add_tcp(std::move(t), context);
      return port;
    }
  }
  void start() {
    thread_ = std::thread([this] { io_.run(); });
  }
  template <typename F>
  auto on_loop(F f) {
    std::promise<decltype(f())> result;
    asio::post(io_, [&] { result.set_value(f()); });
    return result.get_future().get();
  }
  Server& server() { return *server_; }

 private:
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{asio::make_work_guard(io_)};
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

inline std::string dig(uint16_t port, const std::string& args) {
  return run("dig @127.0.0.1 -p " + std::to_string(port) + " +time=3 +tries=1 " + args);
}

// A dnsmasq on 127.0.0.1:port with a few records, logging the queries it sees.
class Dnsmasq {
 public:
  explicit Dnsmasq(std::vector<std::string> records) : port_(free_port()) {
    log_ = std::filesystem::temp_directory_path() /
           ("weft-dns-test-" + std::to_string(::getpid()) + "-" + std::to_string(port_) + ".log");
    std::vector<std::string> args = {"dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                                     "--conf-file=/dev/null", "--bind-interfaces", "--listen-address=127.0.0.1",
                                     "--interface=lo", "--pid-file=", "--user=root", "--group=root",
                                     "--port=" + std::to_string(port_), "--log-queries",
                                     "--log-facility=" + log_.string()};
    for (auto& r : records) args.push_back(r);
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("dnsmasq", argv.data());
      ::_exit(127);
    }
    // Ready once it answers (any status): before it binds, dig fails at
    // once with "connection refused" rather than timing out.
    for (int i = 0; i < 50; ++i) {
      if (dig(port_, "ready.invalid").find("status:") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ~Dnsmasq() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove(log_, ec);
  }
  uint16_t port() const { return port_; }
  udp::endpoint endpoint() const { return {asio::ip::make_address_v4("127.0.0.1"), port_}; }
  // How many queries for the name dnsmasq has logged.
  int queries_for(const std::string& name) const {
    std::ifstream in(log_);
    int n = 0;
    for (std::string line; std::getline(in, line);)
      if (line.find("query[") != std::string::npos && line.find(" " + name + " from") != std::string::npos) ++n;
    return n;
  }

 private:
  uint16_t port_;
  pid_t pid_ = -1;
  std::filesystem::path log_;
};

// A query in wire form, built by hand so tests can break it at will.
inline std::vector<uint8_t> make_query(const std::string& name, uint16_t type, uint16_t id = 0x1234) {
  std::vector<uint8_t> q = {static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  std::stringstream labels(name);
  for (std::string label; std::getline(labels, label, '.');) {
    q.push_back(static_cast<uint8_t>(label.size()));
    q.insert(q.end(), label.begin(), label.end());
  }
  q.push_back(0);
  q.push_back(static_cast<uint8_t>(type >> 8));
  q.push_back(static_cast<uint8_t>(type));
  q.push_back(0);
  q.push_back(1);
  return q;
}

// Sends one datagram and waits for one answer (nothing on timeout).
inline std::optional<std::vector<uint8_t>> send_query(uint16_t port, const std::vector<uint8_t>& packet,
                                                   std::chrono::milliseconds wait = std::chrono::milliseconds(500)) {
  asio::io_context io;
  udp::socket s(io, udp::endpoint(udp::v4(), 0));
  s.send_to(asio::buffer(packet), udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), port));
  timeval tv{0, static_cast<suseconds_t>(wait.count() * 1000)};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::vector<uint8_t> answer(65536);
  const auto n = ::recv(s.native_handle(), answer.data(), answer.size(), 0);
  if (n < 0) return std::nullopt;
  answer.resize(static_cast<std::size_t>(n));
  return answer;
}

inline int rcode_of(const std::vector<uint8_t>& answer) { return answer.size() >= 4 ? answer[3] & 0x0f : -1; }

}  // namespace weft::dns::testing
