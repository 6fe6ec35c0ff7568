#include "dns/responder.h"

#include <algorithm>
#include <charconv>

#include "dns/wire.h"

namespace weft::dns {
namespace {

constexpr uint8_t opcode_query = 0;

// "4.3.2.1.in-addr.arpa" -> 1.2.3.4
std::optional<Ipv4> reverse_address(std::string_view name) {
  constexpr std::string_view suffix = ".in-addr.arpa";
  if (!name.ends_with(suffix)) return std::nullopt;
  name.remove_suffix(suffix.size());
  std::array<uint8_t, 4> bytes{};
  for (int i = 3; i >= 0; --i) {
    auto dot = name.find('.');
    auto label = name.substr(0, dot);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(label.data(), label.data() + label.size(), value);
    if (ec != std::errc() || end != label.data() + label.size() || label.empty() || value > 255) return std::nullopt;
    bytes[static_cast<std::size_t>(i)] = static_cast<uint8_t>(value);
    if (i == 0) {
      if (dot != std::string_view::npos) return std::nullopt;
    } else {
      if (dot == std::string_view::npos) return std::nullopt;
      name.remove_prefix(dot + 1);
    }
  }
  return Ipv4(bytes);
}

ldns_rr* new_rr(const ldns_rdf* owner, ldns_rr_type type, uint32_t ttl) {
  ldns_rr* rr = ldns_rr_new();
  ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
  ldns_rr_set_type(rr, type);
  ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr, ttl);
  return rr;
}

ldns_rdf* dname(const std::string& name) { return ldns_dname_new_frm_str((name + ".").c_str()); }

ldns_rdf* a_rdf(Ipv4 address) {
  auto bytes = address.to_bytes();
  return ldns_rdf_new_frm_data(LDNS_RDF_TYPE_A, bytes.size(), bytes.data());
}

// The records of an answer, in the order they go on the wire.
struct Records {
  std::vector<ldns_rr*> answer;
  std::vector<ldns_rr*> additional;
  ~Records() {
    for (auto* rr : answer) ldns_rr_free(rr);
    for (auto* rr : additional) ldns_rr_free(rr);
  }
};

}  // namespace

// The common query, answered by hand: one uncompressed question of type A,
// class IN, for a plain name weft owns, with at most a bare EDNS0 OPT; the
// same shape of query for a name weft does not own (other than PTR) is
// handed to the forwarder from here.
// Anything else (and an answer that would need TC) takes the ldns path,
// which builds the same bytes: ldns was half the server's CPU in bench/dns.
bool Responder::fast_answer(std::span<const uint8_t> q, Transport transport, std::string_view context,
                            Reply& reply) const {
  if (q.size() < header_size + 5 || (q[2] & 0x7e) != 0 || (q[3] & 0xdf) != 0) return false;  // AD alone is fine
  if (q[4] != 0 || q[5] != 1 || q[6] || q[7] || q[8] || q[9] || q[10] || q[11] > 1) return false;
  const bool edns = q[11] == 1;
  char name_buffer[256];
  std::size_t name_size = 0;
  std::size_t pos = header_size;
  for (;;) {
    if (pos >= q.size()) return false;
    const std::size_t label = q[pos];
    if (label == 0) break;
    if (label > 63 || pos + 1 + label > q.size() || name_size + label + 1 > 253) return false;
    if (name_size) name_buffer[name_size++] = '.';
    for (std::size_t i = 0; i < label; ++i) {
      char c = static_cast<char>(q[pos + 1 + i]);
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
      name_buffer[name_size++] = c;
    }
    pos += 1 + label;
  }
  if (name_size == 0) return false;
  const std::size_t question_end = pos + 5;
  if (question_end > q.size() || q[pos + 3] != 0 || q[pos + 4] != 1) return false;  // class IN
  const uint16_t qtype = static_cast<uint16_t>(q[pos + 1] << 8 | q[pos + 2]);
  std::size_t udp_limit = classic_udp_size;
  if (edns) {
    // A bare OPT: root owner, version 0, no extended rcode, no options.
    const std::size_t o = question_end;
    if (o + 11 != q.size() || q[o] != 0 || q[o + 1] != 0 || q[o + 2] != 41 || q[o + 5] != 0 || q[o + 6] != 0 ||
        q[o + 9] != 0 || q[o + 10] != 0)
      return false;
    udp_limit = std::clamp<std::size_t>(static_cast<std::size_t>(q[o + 3] << 8 | q[o + 4]), classic_udp_size,
                                        std::max<std::size_t>(config_.max_udp_size, classic_udp_size));
  } else if (question_end != q.size()) {
    return false;
  }
  const std::string_view name(name_buffer, name_size);
  // Per thread (the server's loop and its receive threads answer at once),
  // kept: its capacity stays, so an answer allocates nothing.
  thread_local std::vector<Ipv4> addresses;
  // Only an A query asks for the records: they rotate on every lookup.
  const auto ownership =
      qtype == LDNS_RR_TYPE_A ? view_.resolve_a(context, name, addresses) : view_.owns(context, name);
  if (ownership == Ownership::not_ours && qtype != LDNS_RR_TYPE_PTR) {
    // Not ours and no PTR we could answer: forwarded as the ldns path would,
    // without parsing it twice (the forwarder's cache key parses it again).
    reply.kind = Reply::Kind::forward;
    reply.udp_limit = udp_limit;
    fast_forwards_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (qtype != LDNS_RR_TYPE_A || ownership != Ownership::visible) return false;
  const std::size_t size = question_end + addresses.size() * 16 + (edns ? 11 : 0);
  if (transport == Transport::udp && size > udp_limit) return false;
  auto& w = reply.wire;
  w.resize(size);
  w[0] = q[0];
  w[1] = q[1];
  w[2] = static_cast<uint8_t>(0x80 | 0x04 | (q[2] & 0x01));  // QR, AA, RD as asked
  w[3] = 0x80;                                               // RA, NOERROR
  w[4] = 0;
  w[5] = 1;
  w[6] = static_cast<uint8_t>(addresses.size() >> 8);
  w[7] = static_cast<uint8_t>(addresses.size());
  w[8] = w[9] = w[10] = 0;
  w[11] = edns ? 1 : 0;
  std::copy(q.begin() + header_size, q.begin() + static_cast<std::ptrdiff_t>(question_end), w.begin() + header_size);
  std::size_t at = question_end;
  const uint32_t ttl = config_.ttl_seconds;
  for (const auto& address : addresses) {
    const auto bytes = address.to_bytes();
    const uint8_t rr[16] = {0xc0, 0x0c, 0, 1, 0, 1, static_cast<uint8_t>(ttl >> 24), static_cast<uint8_t>(ttl >> 16),
                            static_cast<uint8_t>(ttl >> 8), static_cast<uint8_t>(ttl), 0, 4,
                            bytes[0], bytes[1], bytes[2], bytes[3]};
    std::copy(std::begin(rr), std::end(rr), w.begin() + static_cast<std::ptrdiff_t>(at));
    at += 16;
  }
  if (edns) {
    const uint16_t ours = std::max<uint16_t>(config_.max_udp_size, classic_udp_size);
    const uint8_t opt[11] = {0, 0, 41, static_cast<uint8_t>(ours >> 8), static_cast<uint8_t>(ours), 0, 0, 0, 0, 0, 0};
    std::copy(std::begin(opt), std::end(opt), w.begin() + static_cast<std::ptrdiff_t>(at));
  }
  reply.udp_limit = udp_limit;
  reply.kind = Reply::Kind::answer;
  fast_answers_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

Reply Responder::handle(std::span<const uint8_t> query, Transport transport, std::string_view context) const {
  Reply reply;
  handle(query, transport, context, reply);
  return reply;
}

void Responder::handle(std::span<const uint8_t> query, Transport transport, std::string_view context,
                       Reply& reply) const {
  reply.kind = Reply::Kind::drop;
  reply.wire.clear();  // keeps its capacity: the fast path writes in place
  reply.udp_limit = classic_udp_size;
  // Too short to carry an ID, or a response (answering one invites loops).
  if (query.size() < header_size || wire_is_response(query)) return;
  if (wire_opcode(query) != opcode_query) {
    reply.kind = Reply::Kind::answer;
    reply.wire = header_only_reply(query, LDNS_RCODE_NOTIMPL);
    return;
  }
  if (config_.fast_path && fast_answer(query, transport, context, reply)) return;
  PktPtr pkt = parse(query);
  if (!pkt || ldns_pkt_qdcount(pkt.get()) != 1 || ldns_pkt_ancount(pkt.get()) != 0 ||
      ldns_pkt_nscount(pkt.get()) != 0 || ldns_rr_list_rr_count(ldns_pkt_question(pkt.get())) != 1) {
    reply.kind = Reply::Kind::answer;
    reply.wire = header_only_reply(query, LDNS_RCODE_FORMERR);
    return;
  }
  const bool edns = ldns_pkt_edns(pkt.get());
  if (edns) {
    reply.udp_limit = std::clamp<std::size_t>(ldns_pkt_edns_udp_size(pkt.get()), classic_udp_size,
                                              std::max<std::size_t>(config_.max_udp_size, classic_udp_size));
  }
  const ldns_rr* question = ldns_rr_list_rr(ldns_pkt_question(pkt.get()), 0);
  const ldns_rr_type qtype = ldns_rr_get_type(question);
  const std::string name = owner_name(question);
  if (ldns_rr_get_class(question) != LDNS_RR_CLASS_IN) {
    reply.kind = Reply::Kind::forward;
    return;
  }

  uint8_t rcode = LDNS_RCODE_NOERROR;
  Records records;
  const ldns_rdf* owner = ldns_rr_owner(question);
  const auto ownership = view_.owns(context, name);
  if (ownership == Ownership::hidden) {
    rcode = LDNS_RCODE_NXDOMAIN;
  } else if (ownership == Ownership::visible) {
    if (qtype == LDNS_RR_TYPE_A || qtype == LDNS_RR_TYPE_ANY) {
      for (auto address : view_.lookup_a(context, name)) {
        ldns_rr* rr = new_rr(owner, LDNS_RR_TYPE_A, config_.ttl_seconds);
        ldns_rr_push_rdf(rr, a_rdf(address));
        records.answer.push_back(rr);
      }
    }
    if (qtype == LDNS_RR_TYPE_SRV || qtype == LDNS_RR_TYPE_ANY) {
      for (const auto& srv : view_.lookup_srv(context, name)) {
        ldns_rdf* target = dname(srv.target);
        if (!target) continue;
        ldns_rr* rr = new_rr(owner, LDNS_RR_TYPE_SRV, config_.ttl_seconds);
        ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, srv.priority));
        ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, srv.weight));
        ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, srv.port));
        ldns_rr_push_rdf(rr, target);
        records.answer.push_back(rr);
        for (auto address : view_.lookup_a(context, srv.target)) {
          ldns_rr* glue = new_rr(target, LDNS_RR_TYPE_A, config_.ttl_seconds);
          ldns_rr_push_rdf(glue, a_rdf(address));
          records.additional.push_back(glue);
        }
      }
    }
    // Any other type: NOERROR with no answer, never forwarded (moby#35118).
  } else {
    std::optional<std::string> ptr;
    if (qtype == LDNS_RR_TYPE_PTR) {
      if (auto address = reverse_address(name)) ptr = view_.lookup_ptr(context, *address);
    }
    if (!ptr) {
      reply.kind = Reply::Kind::forward;
      return;
    }
    ldns_rdf* target = dname(*ptr);
    if (target) {
      ldns_rr* rr = new_rr(owner, LDNS_RR_TYPE_PTR, config_.ttl_seconds);
      ldns_rr_push_rdf(rr, target);
      records.answer.push_back(rr);
    }
  }

  auto build = [&](bool with_records) {
    PktPtr out(ldns_pkt_new());
    ldns_pkt_set_id(out.get(), ldns_pkt_id(pkt.get()));
    ldns_pkt_set_qr(out.get(), true);
    ldns_pkt_set_aa(out.get(), true);
    ldns_pkt_set_rd(out.get(), ldns_pkt_rd(pkt.get()));
    ldns_pkt_set_ra(out.get(), true);
    ldns_pkt_set_opcode(out.get(), LDNS_PACKET_QUERY);
    ldns_pkt_set_rcode(out.get(), rcode);
    ldns_pkt_push_rr(out.get(), LDNS_SECTION_QUESTION, ldns_rr_clone(question));
    if (with_records) {
      for (auto* rr : records.answer) ldns_pkt_push_rr(out.get(), LDNS_SECTION_ANSWER, ldns_rr_clone(rr));
      for (auto* rr : records.additional) ldns_pkt_push_rr(out.get(), LDNS_SECTION_ADDITIONAL, ldns_rr_clone(rr));
    } else {
      ldns_pkt_set_tc(out.get(), true);
    }
    if (edns) ldns_pkt_set_edns_udp_size(out.get(), std::max<uint16_t>(config_.max_udp_size, classic_udp_size));
    return encode(out.get());
  };
  reply.wire = build(true);
  if (transport == Transport::udp && reply.wire.size() > reply.udp_limit) reply.wire = build(false);
  if (reply.wire.empty()) reply.wire = header_only_reply(query, LDNS_RCODE_SERVFAIL);
  reply.kind = Reply::Kind::answer;
  return;
}

}  // namespace weft::dns
