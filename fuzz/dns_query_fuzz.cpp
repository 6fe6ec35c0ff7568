// libFuzzer target over the DNS query path: the responder on UDP and TCP
// (parse, answer from a view, truncation), the cache key of a query, and the
// upstream-answer paths (cache store/load, truncation for a UDP client).
#include <cstddef>
#include <cstdint>
#include <span>

#include "dns/answer_cache.h"
#include "dns/responder.h"
#include "dns/static_name_view.h"
#include "dns/wire.h"

namespace {

weft::dns::StaticNameView& view() {
  static weft::dns::StaticNameView* v = [] {
    using namespace weft::dns;
    auto* made = new StaticNameView;
    auto ip = [](const char* t) { return boost::asio::ip::make_address_v4(t); };
    std::vector<Ipv4> many;
    for (uint32_t i = 1; i <= 80; ++i) many.push_back(Ipv4(0x0a000300 + i));
    made->set_network("front",
                      {Service{"web", EndpointMode::vip, ip("10.0.1.2"), {ip("10.0.1.5")}, {{"http", 80, "tcp"}}},
                       Service{"big", EndpointMode::dnsrr, {}, many, {{"", 53, "udp"}}}},
                      {Endpoint{"client", {"alias"}, ip("10.0.1.20")}});
    made->set_network("back", {}, {Endpoint{"db", {}, ip("10.0.2.9")}});
    made->set_context("ep", {"front"});
    return made;
  }();
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace weft::dns;
  static const Responder responder(view(), ResponderConfig{});
  static AnswerCache cache(64, 3600);
  std::span<const uint8_t> input(data, size);
  for (auto transport : {Transport::udp, Transport::tcp}) {
    Reply reply = responder.handle(input, transport, "ep");
    if (reply.kind == Reply::Kind::answer) {
      if (reply.wire.size() < header_size) __builtin_trap();
      if (transport == Transport::udp && reply.wire.size() > reply.udp_limit) __builtin_trap();
      if (wire_id(reply.wire) != wire_id(input)) __builtin_trap();
    }
  }
  // The same bytes as an upstream's answer.
  if (auto key = AnswerCache::key_of(input)) {
    const auto now = AnswerCache::Clock::now();
    cache.put(*key, input, now);
    (void)cache.get(*key, 1, now);
  }
  if (size >= header_size) (void)truncated_copy(input);
  return 0;
}
