// The agent's local API endpoint: HTTP/1.1 on a unix socket that only its
// owner (root) may connect to. Routing lives in api_routes.h; this is the
// transport around it.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "control/model.h"
#include "control/swarm_model.h"

namespace weft::control {

class ApiServer {
 public:
  // Everything runs on `io`'s thread(s); keep `io` single-threaded, as the
  // service is called without locking. `service` must outlive the server.
  // `swarm` may be null: the swarm and node routes then answer 500.
  ApiServer(boost::asio::io_context& io, const std::string& socket_path, NetworkService& service,
            SwarmService* swarm = nullptr);
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
  std::shared_ptr<Listener> listener_;
};

}  // namespace weft::control
