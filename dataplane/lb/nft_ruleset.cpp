#include "dataplane/lb/nft_ruleset.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "dataplane/address.h"

namespace weft::dataplane::lb::nft {
namespace {

const char* proto_text(Protocol proto) { return proto == Protocol::udp ? "udp" : "tcp"; }

std::string snat_rule(const std::string& table, std::uint32_t snat_ip) {
  // Replies of a balanced flow must come back through this namespace's IP
  // stack to be un-NATed: the backend answers the SNAT source, which this
  // bridge owns (the VIP, or the node's own LB address in the network).
  const std::string to = snat_ip ? ipv4_text(snat_ip) : std::string("ct original ip daddr");
  return fmt::format("add rule ip {} postrouting ct status dnat ct original ip daddr @vips snat ip to {}\n",
                     table, to);
}

}  // namespace

std::string ipv4_text(std::uint32_t ip) {
  return fmt::format("{}.{}.{}.{}", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff);
}

std::string create_table(const std::string& table, const TableLimits& l, std::uint32_t snat_ip) {
  // "add" then "delete" makes the delete succeed whether or not the table
  // exists; the whole buffer is one transaction, so no packet sees no table.
  std::string text = fmt::format(R"(add table ip {t}
delete table ip {t}
table ip {t} {{
  set {marker} {{ type mark; }}
  set vips {{ type ipv4_addr; size {f}; }}
  map fe_port {{ type ipv4_addr . inet_proto . inet_service : mark; size {f}; }}
  map fe_any {{ type ipv4_addr . inet_proto : mark; size {f}; }}
  map svc_pick {{ type mark : verdict; size {s}; }}
  map slots {{ typeof meta mark . numgen random mod 2 : ct mark; size {b}; }}
  map backend_addr {{ type mark : ipv4_addr; size {b}; counter; }}
  map backend_svc {{ type mark : mark; size {b}; }}
  chain balance {{
    tcp flags & (fin|syn|rst|ack) != syn return
    meta mark vmap @svc_pick
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr != @vips return
    meta mark set ip daddr . meta l4proto . th dport map @fe_port goto balance
    meta mark set ip daddr . meta l4proto map @fe_any goto balance
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    ip daddr @vips meta l4proto tcp reject with tcp reset
    ip daddr @vips meta l4proto udp reject
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct status dnat accept
  }}
}}
)",
                                 fmt::arg("t", table), fmt::arg("marker", kLayoutMarker),
                                 fmt::arg("f", l.max_frontends), fmt::arg("s", l.max_services),
                                 fmt::arg("b", l.max_backends));
  return text + snat_rule(table, snat_ip);
}

std::string replace_snat_rule(const std::string& table, std::uint32_t snat_ip) {
  return fmt::format("flush chain ip {} postrouting\n", table) + snat_rule(table, snat_ip);
}

std::string replace_snat_mac_table(const std::string& table, const std::string& bridge, std::uint32_t snat_ip) {
  std::string text = fmt::format("add table netdev {0}\ndelete table netdev {0}\n", table);
  if (!snat_ip) return text;
  const auto mac = MacAddress::from_ipv4(Ipv4{snat_ip});
  // Ingress of the bridge sees only what the bridge passes up to its own
  // stack, not the frames it forwards between endpoints.
  return text + fmt::format(R"(table netdev {t} {{
  chain snat_mac {{
    type filter hook ingress device "{d}" priority filter; policy accept;
    ether daddr {m} meta pkttype set host
  }}
}}
)",
                            fmt::arg("t", table), fmt::arg("d", bridge), fmt::arg("m", mac.str()));
}

namespace {

void put_host(std::uint8_t* at, std::uint32_t v) { std::memcpy(at, &v, 4); }
void put_net(std::uint8_t* at, std::uint32_t v) {
  v = htonl(v);
  std::memcpy(at, &v, 4);
}

// A key of 32-bit host-order values (marks, numgen's slot number).
Element host_key(std::uint32_t a) {
  Element e;
  put_host(e.key.data(), a);
  e.key_len = 4;
  return e;
}

Element host_key(std::uint32_t a, std::uint32_t b) {
  Element e;
  put_host(e.key.data(), a);
  put_host(e.key.data() + 4, b);
  e.key_len = 8;
  return e;
}

// VIP . inet_proto [. inet_service]: one byte of protocol, the port in
// network order, each padded to 4 bytes.
Element frontend_key(const Frontend& f) {
  Element e;
  put_net(e.key.data(), f.vip);
  e.key[4] = f.proto == Protocol::udp ? IPPROTO_UDP : IPPROTO_TCP;
  e.key_len = 8;
  if (f.port != 0) {
    const std::uint16_t port = htons(f.port);
    std::memcpy(e.key.data() + 8, &port, 2);
    e.key_len = 12;
  }
  return e;
}

Element with_host_data(Element e, std::uint32_t v) {
  put_host(e.data.data(), v);
  e.data_len = 4;
  return e;
}

}  // namespace

void Commands::push(std::vector<MapChanges>& list, const char* map, std::string text, const Element& element) {
  auto it = std::find_if(list.begin(), list.end(), [&](const MapChanges& m) { return m.map == map; });
  if (it == list.end()) it = list.insert(list.end(), MapChanges{map, {}, {}});
  it->text.push_back(std::move(text));
  it->elements.push_back(element);
}

std::string Commands::chains_text() const {
  std::string out;
  for (const auto& c : chains_) out += c;
  return out;
}

std::string Commands::text() const {
  std::string out = chains_text();
  auto render = [&](const char* verb, const std::vector<MapChanges>& list) {
    for (const auto& m : list) {
      out += fmt::format("{} element ip {} {} {{ ", verb, table_, m.map);
      for (std::size_t i = 0; i < m.text.size(); ++i) {
        if (i) out += ", ";
        out += m.text[i];
      }
      out += " }\n";
    }
  };
  render("delete", deletes_);
  render("add", adds_);
  return out;
}

void Commands::add_frontend(const Frontend& f, std::uint32_t service_id) {
  ++operations_;
  const Element e = with_host_data(frontend_key(f), service_id);
  if (f.port == 0)
    push(adds_, "fe_any", fmt::format("{} . {} : {}", ipv4_text(f.vip), proto_text(f.proto), service_id), e);
  else
    push(adds_, "fe_port", fmt::format("{} . {} . {} : {}", ipv4_text(f.vip), proto_text(f.proto), f.port, service_id),
         e);
}

void Commands::delete_frontend(const Frontend& f) {
  ++operations_;
  if (f.port == 0)
    push(deletes_, "fe_any", fmt::format("{} . {}", ipv4_text(f.vip), proto_text(f.proto)), frontend_key(f));
  else
    push(deletes_, "fe_port", fmt::format("{} . {} . {}", ipv4_text(f.vip), proto_text(f.proto), f.port),
         frontend_key(f));
}

void Commands::add_vip(std::uint32_t vip) {
  ++operations_;
  Element e;
  put_net(e.key.data(), vip);
  e.key_len = 4;
  push(adds_, "vips", ipv4_text(vip), e);
}

void Commands::delete_vip(std::uint32_t vip) {
  ++operations_;
  Element e;
  put_net(e.key.data(), vip);
  e.key_len = 4;
  push(deletes_, "vips", ipv4_text(vip), e);
}

void Commands::add_pick_chain(std::uint32_t n) {
  // The slot number is drawn per new connection; conntrack keeps the
  // connection on its backend for its life. ct mark = backend id, so a dead
  // backend's flows can be flushed from conntrack by mark. Chain and rules
  // as separate commands: libnftables 1.0.6 does not load the sets into
  // its cache for "add chain x { rules }" alone ("No such file or
  // directory" for @slots), and the chains now go without the elements.
  ++operations_;
  chains_.push_back(fmt::format("add chain ip {0} pick_{1}\n"
                                "add rule ip {0} pick_{1} ct mark set meta mark . numgen random mod {1} map @slots\n"
                                "add rule ip {0} pick_{1} dnat ip to ct mark map @backend_addr\n",
                                table_, n));
}

void Commands::add_slot(std::uint32_t service_id, std::uint32_t slot, std::uint32_t backend_id) {
  ++operations_;
  push(adds_, "slots", fmt::format("{} . {} : {}", service_id, slot, backend_id),
       with_host_data(host_key(service_id, slot), backend_id));
}

void Commands::delete_slot(std::uint32_t service_id, std::uint32_t slot) {
  ++operations_;
  push(deletes_, "slots", fmt::format("{} . {}", service_id, slot), host_key(service_id, slot));
}

void Commands::set_pick(std::uint32_t service_id, std::uint32_t n) {
  ++operations_;
  Element e = host_key(service_id);
  e.goto_pick = n;
  push(adds_, "svc_pick", fmt::format("{} : goto pick_{}", service_id, n), e);
}

void Commands::delete_pick(std::uint32_t service_id) {
  ++operations_;
  push(deletes_, "svc_pick", std::to_string(service_id), host_key(service_id));
}

void Commands::add_backend(std::uint32_t backend_id, std::uint32_t ip) {
  ++operations_;
  Element e = host_key(backend_id);
  put_net(e.data.data(), ip);
  e.data_len = 4;
  push(adds_, "backend_addr", fmt::format("{} : {}", backend_id, ipv4_text(ip)), e);
}

void Commands::delete_backend(std::uint32_t backend_id) {
  ++operations_;
  push(deletes_, "backend_addr", std::to_string(backend_id), host_key(backend_id));
}

void Commands::add_owner(std::uint32_t backend_id, std::uint32_t service_id) {
  ++operations_;
  push(adds_, "backend_svc", fmt::format("{} : {}", backend_id, service_id),
       with_host_data(host_key(backend_id), service_id));
}

void Commands::delete_owner(std::uint32_t backend_id) {
  ++operations_;
  push(deletes_, "backend_svc", std::to_string(backend_id), host_key(backend_id));
}

}  // namespace weft::dataplane::lb::nft
