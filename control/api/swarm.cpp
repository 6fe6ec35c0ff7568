#include "control/api/swarm.h"

#include "control/model/model.h"
#include "control/model/names.h"

namespace weft::control::api {

using nlohmann::json;

namespace {
[[noreturn]] void bad_request(const std::string& m) { throw ApiError(ApiError::Kind::BadRequest, m); }

json parse_object(const std::string& body) {
  if (body.empty()) return json::object();
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) bad_request("request body is not valid JSON");
  if (!j.is_object()) bad_request("request body must be a JSON object");
  return j;
}
}  // namespace

json node_json(const NodeInfo& n) {
  return {{"ID", n.id},
          {"Hostname", n.hostname},
          {"Status", n.status},
          {"Availability", n.availability},
          {"Address", n.address},
          {"Role", n.role},
          {"Membership", n.membership},
          {"Self", n.self},
          {"Incarnation", n.incarnation},
          // Docker's nesting, for scripts written against `docker node inspect`.
          {"Description", {{"Hostname", n.hostname}}},
          {"Spec", {{"Availability", n.availability}}}};
}

json swarm_json(const SwarmInfo& i) {
  return {{"Active", i.active},         {"NodeID", i.node_id},      {"NodeName", i.node_name},
          {"GossipKey", i.gossip_key_base64}, {"JoinToken", i.join_token}, {"Advertise", i.advertise}};
}

json swarm_init_json(const SwarmInitResult& r) {
  return {{"NodeID", r.node_id}, {"JoinToken", r.join_token}, {"Advertise", r.advertise}};
}

SwarmInitRequest parse_swarm_init(const std::string& body) {
  const json j = parse_object(body);
  SwarmInitRequest request;
  if (auto it = j.find("AdvertiseAddr"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) bad_request("AdvertiseAddr must be a string");
    std::string address = it->get<std::string>();
    names::validate_text("AdvertiseAddr", address, names::kMaxAddress);
    // Docker's CLI sends "" without --advertise-addr: the agent's own.
    if (!address.empty()) request.advertise_addr = std::move(address);
  }
  // ListenAddr, DataPathAddr, DataPathPort, DefaultAddrPool, Spec... (what
  // Docker's CLI sends) are the agent's flags here (--bind,
  // --default-addr-pool) and are ignored.
  return request;
}

SwarmJoinRequest parse_swarm_join(const std::string& body) {
  const json j = parse_object(body);
  SwarmJoinRequest request;
  auto token = j.find("JoinToken");
  if (token == j.end() || !token->is_string() || token->get<std::string>().empty())
    bad_request("JoinToken is required");
  request.join_token = token->get<std::string>();
  names::validate_text("JoinToken", request.join_token, names::kMaxJoinToken);
  auto addrs = j.find("RemoteAddrs");
  if (addrs == j.end() || !addrs->is_array() || addrs->empty())
    bad_request("RemoteAddrs must list at least one ADDR:PORT");
  if (addrs->size() > names::kMaxRemoteAddrs)
    bad_request("RemoteAddrs lists " + std::to_string(addrs->size()) + " addresses; the limit is " +
                std::to_string(names::kMaxRemoteAddrs));
  for (const auto& a : *addrs) {
    if (!a.is_string()) bad_request("RemoteAddrs must be strings");
    request.remote_addrs.push_back(a.get<std::string>());
    names::validate_text("RemoteAddrs entry", request.remote_addrs.back(), names::kMaxAddress);
  }
  return request;
}

}  // namespace weft::control::api
