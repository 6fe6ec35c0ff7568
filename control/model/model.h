// Objects the agent manages, as the API and the CLI see them. Addresses are
// typed values here; they become text only at the JSON edge (api/json,
// model/record_json). Requests keep what the user typed: the service parses it and
// says what is wrong with it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/address.h"

namespace weft::control {

// What a user asks for with `weft network create`.
struct NetworkSpec {
  std::string name;
  std::string driver = "overlay";
  std::optional<std::string> subnet{};   // CIDR, e.g. "10.0.9.0/24"
  std::optional<std::string> gateway{};  // IPv4 inside subnet
  bool attachable = false;
};

struct Network {
  std::string id;       // 64 hex chars, like Docker's
  std::string name;
  std::string driver;   // "overlay"
  dataplane::Cidr subnet{};
  // Never 0.0.0.0 in a real network (that is the network address of any
  // subnet holding it): zero marks a Network that was never filled in.
  dataplane::Ipv4 gateway{};
  std::uint32_t vni = 0;
  bool attachable = false;
  std::string created;  // RFC 3339
  std::string node;     // node that created (owns) the entry
};

// `weft endpoint attach NETWORK --netns NAME|PATH [--name N] [--ip IP]`
struct AttachRequest {
  std::string network;  // name, id or unique id prefix
  std::string netns;    // a name under /run/netns or a path (/proc/PID/ns/net)
  std::optional<std::string> name{};
  std::optional<std::string> ip{};
  // Makes the endpoint a backend of this service (name, id or unique
  // prefix); the service must be on the network.
  std::optional<std::string> service{};
  // More DNS names the endpoint answers to on its network (--alias).
  std::vector<std::string> aliases{};
};

struct DetachRequest {
  std::string network;
  std::string netns;
  // With a drain time, a service backend first stops getting new
  // connections while its open ones go on; the endpoint goes once they are
  // closed or the time is up (the request returns at once).
  std::optional<std::uint32_t> drain_seconds{};
};

// A service backend's state in the load balancer: active ones get new
// connections; draining ones only keep theirs.
enum class BackendState : std::uint8_t { active, draining };

struct Endpoint {
  std::string id;            // 64 hex chars
  std::string name;
  std::string network_id;
  std::string network_name;
  std::string netns;         // as the user gave it
  std::string ifname;        // inside netns, e.g. "eth0"
  // 0.0.0.0 (never an endpoint's: a network address) marks an Endpoint
  // that was never filled in.
  dataplane::Ipv4 ip{};
  int prefix_len = 0;        // its network's
  dataplane::MacAddress mac{};
  std::string node;
  // The service this endpoint is a backend of (its id); empty: none.
  std::string service_id{};
  BackendState backend_state = BackendState::active;
  // While draining: when the endpoint goes (RFC 3339, UTC).
  std::string drain_until{};
  // More DNS names of the endpoint on its network (`attach --alias`).
  std::vector<std::string> aliases{};
};

// Where the embedded DNS answers inside every attached namespace.
inline constexpr const char* kEmbeddedDnsAddress = "127.0.0.11";

// An error the API reports to its client with an HTTP status.
class ApiError : public std::runtime_error {
 public:
  enum class Kind { BadRequest, NotFound, Conflict, Internal };
  ApiError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }
  int http_status() const {
    switch (kind_) {
      case Kind::BadRequest: return 400;
      case Kind::NotFound: return 404;
      case Kind::Conflict: return 409;
      case Kind::Internal: break;
    }
    return 500;
  }

 private:
  Kind kind_;
};

class PackedEndpoint;  // control/model/packed_endpoint.h

// Every endpoint as list_endpoints() has them (in its order), immutable:
// readers share one (the DNS, the load balancer's view, the event watcher,
// the observe poller) instead of each copying 100 000 endpoints, and its
// elements are the very objects the network manager holds (one per
// endpoint, shared; read them through packed_endpoint.h). `version` changes
// whenever the endpoints may have; a reader that holds the same version has
// seen these contents. 0: no version known (compare contents).
struct EndpointSnapshot {
  std::uint64_t version = 0;
  std::vector<std::shared_ptr<const PackedEndpoint>> endpoints;

  // A snapshot of these endpoints (each packed with strings of its own).
  static std::shared_ptr<EndpointSnapshot> of(const std::vector<Endpoint>& endpoints, std::uint64_t version = 0);
};

// The operations behind the local API. NetworkManager implements it against
// the kernel; API tests use a fake.
class NetworkService {
 public:
  virtual ~NetworkService() = default;
  virtual Network create_network(const NetworkSpec& spec) = 0;
  virtual std::vector<Network> list_networks() = 0;
  virtual Network get_network(const std::string& name_or_id) = 0;
  virtual void remove_network(const std::string& name_or_id) = 0;
  virtual Endpoint connect(const AttachRequest& request) = 0;
  virtual void disconnect(const DetachRequest& request) = 0;
  virtual std::vector<Endpoint> list_endpoints() = 0;
  // The same, shared; NetworkManager builds one per change (see above).
  virtual std::shared_ptr<const EndpointSnapshot> shared_endpoints() {
    return EndpointSnapshot::of(list_endpoints());
  }
};

}  // namespace weft::control
