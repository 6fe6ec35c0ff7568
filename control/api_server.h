// The agent's local API endpoint: HTTP/1.1 on a unix socket that only its
// owner (root) may connect to. Routing lives in api_routes.h; this is the
// transport around it.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "control/model.h"
#include "control/swarm_model.h"

namespace weft::control {

// How much of the agent's resources API clients may hold. The agent shares
// its descriptors with gossip sockets, netlink and namespace files, so API
// connections get only a part of them.
struct ApiServerLimits {
  // Open connections at most; 0 means default_max_api_connections(). At the
  // cap a new connection displaces the one idle longest (a keep-alive
  // connection, or one that has not sent anything yet).
  std::size_t max_connections = 0;
  // How long a connection may wait for (the first byte of) its next request.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  // How long a request may take to arrive in full once it has begun, so a
  // client dribbling headers or a body (slowloris) cannot hold a connection.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
};

// min(512, RLIMIT_NOFILE soft limit / 4), at least 4: three quarters of the
// descriptors stay for the gossip and the kernel.
std::size_t default_max_api_connections();

class ApiServer {
 public:
  // Everything runs on `io`'s thread(s); keep `io` single-threaded, as the
  // service is called without locking. `service` must outlive the server.
  // `swarm` may be null: the swarm and node routes then answer 500.
  ApiServer(boost::asio::io_context& io, const std::string& socket_path, NetworkService& service,
            SwarmService* swarm = nullptr, ApiServerLimits limits = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Creates the socket's parent directory, replaces a stale socket file and
  // starts accepting. Throws std::runtime_error when another process is
  // already serving on the path or the socket cannot be set up.
  void start();

  // Stops accepting, closes every connection and removes the socket file.
  // Idempotent. Call it on the io_context's thread (e.g. from a signal_set
  // handler) or while the io_context is not running.
  void stop();

  const std::string& socket_path() const { return socket_path_; }

 private:
  class Listener;

  boost::asio::io_context& io_;
  std::string socket_path_;
  NetworkService& service_;
  SwarmService* swarm_;
  ApiServerLimits limits_;
  std::shared_ptr<Listener> listener_;
};

}  // namespace weft::control
