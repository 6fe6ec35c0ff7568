// The agent's local API endpoint: HTTP/1.1 on a unix socket that only its
// owner (root) may connect to. Routing lives in routes.h; this is the
// transport around it.
//
// Threading model. Sockets, connections, timers and the admission
// bookkeeping live on the io_context's single thread ("io thread"), so they
// need no locks. A request is read there, then:
// - routes that touch no service (_ping, /version, 404/405/400 answers) are
//   answered there at once;
// - everything else is handed to a small pool of worker threads
//   (ApiServerLimits::workers), because a handler may wait for a long time:
//   a swarm join for up to 15 s, an attach for an address donation for up
//   to 8 s. Which requests may run side by side is RequestScheduler's rule
//   (scheduler.h): reads always start at once and never wait for a
//   change; network changes take turns (see kNetworkChangesAtOnce in
//   server.cpp) and never fill every worker, so one is always left for
//   reads; a swarm change (init, join, leave, node rm) runs alone among the
//   changes; changes start in arrival order, as everything did when the API
//   had one thread. Beyond max_pending_requests admitted requests a request
//   gets a 503 at once instead of a place in a queue.
// - the handler's response is posted back to the io thread, which writes it
//   on the connection (or drops it if the connection has closed meanwhile).
// - `GET /events` holds no worker: the connection subscribes to the
//   DockerEngineState's EventBus and writes each event as a chunk on the io
//   thread until `until`, the client closing, or the client falling 1 MiB
//   behind; at most 32 streams at once (then 503).
// So handlers run on several threads at once. What they call is safe for
// that: NetworkManager holds one mutex per call (released while it waits for
// a donation); Cluster runs every swarm operation on its gossip thread
// (Cluster::State::call), waiting for peers outside it; the swarm changes
// and network changes that check state and act on it across such waits
// never overlap each other (the scheduler's rule).
// A service passed to the server must be safe to call from several threads.
//
// Shutdown: stop() closes the connections and then waits for handlers still
// running (bounded by the services' own timeouts, 15 s at most for a join);
// requests not yet started are dropped. So the services it calls, the cluster
// included, must still be running when stop() is called.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "control/api/routes.h"
#include "control/model/model.h"
#include "control/model/swarm_model.h"

namespace weft::control::api {

class RequestDispatcher;  // server.cpp

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
  // Threads that run handlers (at least 2: one is always kept for reads).
  std::size_t workers = 4;
  // Requests admitted and not finished, running or waiting their turn; one
  // more is answered 503 at once.
  std::size_t max_pending_requests = 64;
};

// min(512, RLIMIT_NOFILE soft limit / 4), at least 4: three quarters of the
// descriptors stay for the gossip and the kernel.
std::size_t default_max_api_connections();

class ApiServer {
 public:
  // Connections run on `io`'s thread, which must be a single one; handlers
  // on the server's own workers (see the top of this file). `service` and
  // `swarm` must outlive the server and be safe to call from several
  // threads. `swarm` may be null: the swarm and node routes then answer 500.
  ApiServer(boost::asio::io_context& io, const std::string& socket_path, NetworkService& service,
            SwarmService* swarm = nullptr, ApiServerLimits limits = {});
  // The same with every service the routes call (routes.h); what is null
  // there answers 500.
  ApiServer(boost::asio::io_context& io, const std::string& socket_path, Services services,
            ApiServerLimits limits = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Creates the socket's parent directory, replaces a stale socket file and
  // starts accepting. Throws std::runtime_error when another process is
  // already serving on the path or the socket cannot be set up.
  void start();

  // Stops accepting, closes every connection, removes the socket file and
  // waits for the handlers still running. Idempotent. Call it on the
  // io_context's thread (e.g. from a signal_set handler) or while the
  // io_context is not running.
  void stop();

  const std::string& socket_path() const { return socket_path_; }

 private:
  class Listener;

  boost::asio::io_context& io_;
  std::string socket_path_;
  Services services_;
  ApiServerLimits limits_;
  std::shared_ptr<RequestDispatcher> dispatcher_;
  std::shared_ptr<Listener> listener_;
};

}  // namespace weft::control::api
