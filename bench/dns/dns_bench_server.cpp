// weft's DNS server for the bench: 100 names x 4 A records (dnsrr services)
// on IP:PORT, answered from a StaticNameView. With --upstream, every name it
// does not own goes there (NAMES 0 makes it a pure forwarder); --cache
// sizes the forwarder's answer cache (0: every query goes upstream, which is
// what the forwarding-latency measurement wants). --idle N adds N more UDP
// listeners (and their TCP twins) on IP, random ports, that get no queries, as the agent has one
// per attached namespace: what they cost the busy one. --batch sets the
// datagrams per recvmmsg/sendmmsg (ServerLimits::udp_batch), --threads the
// receive threads for busy sockets (ServerLimits::udp_threads; 0: the loop
// serves every socket) and --thread-batch their batch.
//   dns_bench_server IP PORT [NAMES] [--upstream IP[:PORT]] [--cache ENTRIES] [--idle N] [--batch N]
//                    [--threads N] [--thread-batch N]
#include <utility>  // before Boost.Asio: its awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "dns/server.h"
#include "dns/static_name_view.h"

int main(int argc, char** argv) {
  using namespace weft::dns;
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: dns_bench_server IP PORT [NAMES] [--upstream IP[:PORT]] [--cache ENTRIES] [--idle N] "
                 "[--batch N] [--threads N] [--thread-batch N]\n");
    return 2;
  }
  int names = 100;
  int idle = 0;
  ServerLimits limits;
  ForwarderConfig forwarder;
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--upstream" && i + 1 < argc) {
      auto upstream = parse_upstream(argv[++i]);
      if (!upstream) {
        std::fprintf(stderr, "dns_bench_server: bad upstream %s\n", argv[i]);
        return 2;
      }
      forwarder.upstreams.push_back(*upstream);
    } else if (arg == "--batch" && i + 1 < argc) {
      limits.udp_batch = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--threads" && i + 1 < argc) {
      limits.udp_threads = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--thread-batch" && i + 1 < argc) {
      limits.thread_batch = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--idle" && i + 1 < argc) {
      idle = std::atoi(argv[++i]);
    } else if (arg == "--cache" && i + 1 < argc) {
      forwarder.cache_entries = std::strtoul(argv[++i], nullptr, 10);
    } else {
      names = std::atoi(argv[i]);
    }
  }
  StaticNameView view;
  std::vector<Service> services;
  for (int i = 0; i < names; ++i) {
    Service s{"name" + std::to_string(i), EndpointMode::dnsrr, {}, {}, {}};
    for (uint32_t k = 1; k <= 4; ++k) s.backends.push_back(Ipv4(0x0a000000u + static_cast<uint32_t>(i) * 8 + k));
    services.push_back(std::move(s));
  }
  view.set_network("bench", std::move(services), {});
  view.set_context("bench", {"bench"});
  boost::asio::io_context io;
  Server server(io, view, ResponderConfig{}, forwarder, limits);
  const auto address = boost::asio::ip::make_address_v4(argv[1]);
  const auto port = static_cast<uint16_t>(std::atoi(argv[2]));
  boost::asio::ip::udp::socket udp(io, boost::asio::ip::udp::endpoint(address, port));
  udp.set_option(boost::asio::socket_base::receive_buffer_size(4 << 20));
  server.add_udp(std::move(udp), "bench");
  for (int i = 0; i < idle; ++i) {
    boost::asio::ip::udp::socket socket(io, boost::asio::ip::udp::endpoint(address, 0));
    const auto idle_port = socket.local_endpoint().port();
    server.add_udp(std::move(socket), "bench");
    boost::system::error_code ec;  // the TCP twin where its port is free
    boost::asio::ip::tcp::acceptor acceptor(io);
    acceptor.open(boost::asio::ip::tcp::v4(), ec);
    if (!ec) acceptor.bind(boost::asio::ip::tcp::endpoint(address, idle_port), ec);
    if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
    if (!ec) server.add_tcp(std::move(acceptor), "bench");
  }
  server.add_tcp(boost::asio::ip::tcp::acceptor(io, boost::asio::ip::tcp::endpoint(address, port)), "bench");
  io.run();
}
