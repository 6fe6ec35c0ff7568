#include "dns/wire.h"

#include <cctype>
#include <cstdlib>

namespace weft::dns {

namespace {

// ldns 1.8's ldns_wire2pkt keeps a TSIG record of the additional section as
// the packet's TSIG and overwrites it, without freeing it, when another
// comes: every TSIG but the last is leaked (found by the DNS fuzz target).
// A query is unauthenticated input, so a packet with several is refused
// before ldns sees it; it is malformed anyway (RFC 8945: at most one, the
// last record). A walk of the records' headers, only when ARCOUNT >= 2.
bool several_tsig_records(std::span<const uint8_t> wire) {
  if (wire.size() < header_size) return false;
  auto count = [&](std::size_t at) { return static_cast<unsigned>(wire[at] << 8 | wire[at + 1]); };
  const unsigned questions = count(4), before_additional = questions + count(6) + count(8), all = before_additional + count(10);
  if (count(10) < 2) return false;
  std::size_t at = header_size;
  auto skip_name = [&] {
    while (at < wire.size()) {
      const uint8_t length = wire[at];
      if ((length & 0xc0) == 0xc0) {
        at += 2;  // a compression pointer ends the name
        return at <= wire.size();
      }
      if (length & 0xc0) return false;
      at += 1u + length;
      if (length == 0) return at <= wire.size();
    }
    return false;
  };
  unsigned tsig = 0;
  for (unsigned record = 0; record < all; ++record) {
    // Where the walk fails, ldns fails too, having parsed no more than this.
    if (!skip_name()) return false;
    if (record < questions) {
      at += 4;  // type, class
      continue;
    }
    if (at + 10 > wire.size()) return false;
    const unsigned type = count(at), rdlength = count(at + 8);
    at += 10u + rdlength;
    if (record >= before_additional && type == LDNS_RR_TYPE_TSIG && ++tsig > 1) return true;
  }
  return false;
}

}  // namespace

PktPtr parse(std::span<const uint8_t> wire) {
  if (several_tsig_records(wire)) return nullptr;
  ldns_pkt* pkt = nullptr;
  if (ldns_wire2pkt(&pkt, wire.data(), wire.size()) != LDNS_STATUS_OK) {
    if (pkt) ldns_pkt_free(pkt);
    return nullptr;
  }
  return PktPtr(pkt);
}

std::vector<uint8_t> encode(const ldns_pkt* pkt) {
  uint8_t* data = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&data, pkt, &size) != LDNS_STATUS_OK) {
    std::free(data);
    return {};
  }
  std::vector<uint8_t> out(data, data + size);
  std::free(data);
  return out;
}

std::vector<uint8_t> header_only_reply(std::span<const uint8_t> query, uint8_t rcode) {
  std::vector<uint8_t> out(header_size, 0);
  out[0] = query[0];
  out[1] = query[1];
  out[2] = static_cast<uint8_t>(0x80 | (query[2] & 0x78) | (query[2] & 0x01));  // QR, opcode, RD
  out[3] = static_cast<uint8_t>(0x80 | (rcode & 0x0f));                          // RA
  return out;
}

std::vector<uint8_t> error_reply(std::span<const uint8_t> query, uint8_t rcode) {
  PktPtr pkt = parse(query);
  if (!pkt || ldns_rr_list_rr_count(ldns_pkt_question(pkt.get())) != 1) return header_only_reply(query, rcode);
  PktPtr out(ldns_pkt_new());
  ldns_pkt_set_id(out.get(), ldns_pkt_id(pkt.get()));
  ldns_pkt_set_qr(out.get(), true);
  ldns_pkt_set_rd(out.get(), ldns_pkt_rd(pkt.get()));
  ldns_pkt_set_ra(out.get(), true);
  ldns_pkt_set_opcode(out.get(), ldns_pkt_get_opcode(pkt.get()));
  ldns_pkt_set_rcode(out.get(), rcode);
  ldns_pkt_push_rr(out.get(), LDNS_SECTION_QUESTION, ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(pkt.get()), 0)));
  if (ldns_pkt_edns(pkt.get())) ldns_pkt_set_edns_udp_size(out.get(), ldns_pkt_edns_udp_size(pkt.get()));
  auto wire = encode(out.get());
  return wire.empty() ? header_only_reply(query, rcode) : wire;
}

std::string owner_name(const ldns_rr* rr) {
  const ldns_rdf* owner = ldns_rr_owner(rr);
  if (!owner) return {};
  char* text = ldns_rdf2str(owner);
  if (!text) return {};
  std::string name(text);
  std::free(text);
  if (name.ends_with('.')) name.pop_back();
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::vector<uint8_t> truncated_copy(std::span<const uint8_t> response) {
  PktPtr pkt = parse(response);
  if (!pkt) return {};
  for (auto section : {LDNS_SECTION_ANSWER, LDNS_SECTION_AUTHORITY, LDNS_SECTION_ADDITIONAL}) {
    ldns_rr_list* list = nullptr;
    switch (section) {
      case LDNS_SECTION_ANSWER: list = ldns_pkt_answer(pkt.get()); ldns_pkt_set_answer(pkt.get(), ldns_rr_list_new()); ldns_pkt_set_ancount(pkt.get(), 0); break;
      case LDNS_SECTION_AUTHORITY: list = ldns_pkt_authority(pkt.get()); ldns_pkt_set_authority(pkt.get(), ldns_rr_list_new()); ldns_pkt_set_nscount(pkt.get(), 0); break;
      default: list = ldns_pkt_additional(pkt.get()); ldns_pkt_set_additional(pkt.get(), ldns_rr_list_new()); ldns_pkt_set_arcount(pkt.get(), 0); break;
    }
    ldns_rr_list_deep_free(list);
  }
  ldns_pkt_set_tc(pkt.get(), true);
  return encode(pkt.get());
}

}  // namespace weft::dns
