// The DNS server answered by real `dig` over UDP and TCP on 127.0.0.1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/dns_test_support.h"

namespace weft::dns::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Ipv4 ip(const char* text) { return asio::ip::make_address_v4(text); }

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

class DnsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have("dig")) GTEST_SKIP() << "dig missing (dnsutils): run scripts/setup";
    Service web{"web", EndpointMode::vip, ip("10.0.1.2"), {ip("10.0.1.5"), ip("10.0.1.6")}, {{"http", 80, "tcp"}}};
    Service cache{"cache", EndpointMode::dnsrr, {}, {ip("10.0.1.7"), ip("10.0.1.8"), ip("10.0.1.9")}, {}};
    view_.set_network("front", {web, cache}, {Endpoint{"client", {"buddy"}, ip("10.0.1.20")}});
    view_.set_network("back", {Service{"db", EndpointMode::vip, ip("10.0.2.2"), {ip("10.0.2.5")}, {}}},
                      {Endpoint{"dbhost", {}, ip("10.0.2.9")}});
    view_.set_context("ep-front", {"front"});
    view_.set_context("ep-back", {"back"});
  }

  void start(ForwarderConfig forwarder = {}, ServerLimits limits = {}) {
    harness_ = std::make_unique<ServerHarness>(view_, ResponderConfig{}, std::move(forwarder), limits);
    front_ = harness_->listen("ep-front");
    back_ = harness_->listen("ep-back");
    harness_->start();
  }

  StaticNameView view_;
  std::unique_ptr<ServerHarness> harness_;
  uint16_t front_ = 0;
  uint16_t back_ = 0;
};

TEST_F(DnsServerTest, ServiceNameIsItsVipOverUdpAndTcp) {
  start();
  EXPECT_EQ(dig(front_, "+short web"), "10.0.1.2\n");
  EXPECT_EQ(dig(front_, "+short +tcp web"), "10.0.1.2\n");
  auto full = dig(front_, "web A");
  EXPECT_THAT(full, HasSubstr("status: NOERROR"));
  EXPECT_THAT(full, HasSubstr("flags: qr aa rd ra"));
  EXPECT_THAT(full, HasSubstr("\t5\tIN\tA\t10.0.1.2"));  // the configured TTL, 5 s
}

TEST_F(DnsServerTest, DnsrrAndTasksRotate) {
  start();
  auto first = lines(dig(front_, "+short cache"));
  auto second = lines(dig(front_, "+short cache"));
  ASSERT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 3u);
  EXPECT_NE(first.front(), second.front());
  auto tasks1 = lines(dig(front_, "+short tasks.web"));
  auto tasks2 = lines(dig(front_, "+short tasks.web"));
  ASSERT_EQ(tasks1.size(), 2u);
  EXPECT_NE(tasks1.front(), tasks2.front());
  std::sort(tasks1.begin(), tasks1.end());
  EXPECT_EQ(tasks1, (std::vector<std::string>{"10.0.1.5", "10.0.1.6"}));
}

TEST_F(DnsServerTest, EndpointNamesAliasesAndNetworkSuffix) {
  start();
  EXPECT_EQ(dig(front_, "+short client"), "10.0.1.20\n");
  EXPECT_EQ(dig(front_, "+short BUDDY"), "10.0.1.20\n");
  EXPECT_EQ(dig(front_, "+short client.front"), "10.0.1.20\n");
  EXPECT_EQ(dig(front_, "+short web.front"), "10.0.1.2\n");
}

TEST_F(DnsServerTest, PtrAndSrv) {
  start();
  EXPECT_EQ(dig(front_, "+short -x 10.0.1.20"), "client.front.\n");
  EXPECT_EQ(dig(front_, "+short -x 10.0.1.2"), "web.front.\n");
  EXPECT_EQ(dig(front_, "+short SRV _http._tcp.web"), "0 0 80 web.front.\n");
  EXPECT_EQ(dig(front_, "+short SRV _80._tcp.web"), "0 0 80 web.front.\n");
  EXPECT_THAT(dig(front_, "SRV _80._tcp.web"), HasSubstr("IN\tA\t10.0.1.2"));
}

TEST_F(DnsServerTest, NameOnAnUnseenNetworkIsNxdomain) {
  start();
  EXPECT_THAT(dig(front_, "db"), HasSubstr("status: NXDOMAIN"));
  EXPECT_THAT(dig(front_, "dbhost.back"), HasSubstr("status: NXDOMAIN"));
  EXPECT_EQ(dig(back_, "+short db"), "10.0.2.2\n");
  EXPECT_THAT(dig(back_, "web"), HasSubstr("status: NXDOMAIN"));
  EXPECT_EQ(dig(back_, "+short -x 10.0.1.20"), "");  // not ours to name for that context
}

TEST_F(DnsServerTest, OwnedNameOtherTypesAreEmptyAndNeverForwarded) {
  if (!have("dnsmasq")) GTEST_SKIP() << "dnsmasq missing: run scripts/setup";
  Dnsmasq upstream({"--address=/web/192.0.2.99", "--address=/ext.example/192.0.2.55"});
  start(ForwarderConfig{{upstream.endpoint()}});
  for (const char* type : {"AAAA", "MX", "TXT"}) {
    auto answer = dig(front_, std::string(type) + " web");
    EXPECT_THAT(answer, HasSubstr("status: NOERROR")) << type;
    EXPECT_THAT(answer, HasSubstr("ANSWER: 0")) << type;
  }
  EXPECT_THAT(dig(front_, "AAAA web +tcp"), HasSubstr("ANSWER: 0"));
  EXPECT_EQ(upstream.queries_for("web"), 0);
  // The upstream is reachable: the same server forwards what is not ours.
  EXPECT_EQ(dig(front_, "+short ext.example"), "192.0.2.55\n");
  EXPECT_EQ(upstream.queries_for("ext.example"), 1);
}

TEST_F(DnsServerTest, ForwardsKeepingIdAndCachesByTtl) {
  if (!have("dnsmasq")) GTEST_SKIP() << "dnsmasq missing: run scripts/setup";
  Dnsmasq upstream({"--host-record=host.example,198.51.100.7", "--local-ttl=60", "--local=/example/"});
  start(ForwarderConfig{{upstream.endpoint()}});
  auto answer = send_query(front_, make_query("host.example", 1, 0xbeef));
  ASSERT_TRUE(answer);
  EXPECT_EQ((*answer)[0], 0xbe);
  EXPECT_EQ((*answer)[1], 0xef);
  EXPECT_EQ(rcode_of(*answer), 0);
  EXPECT_EQ(dig(front_, "+short host.example"), "198.51.100.7\n");
  EXPECT_EQ(dig(front_, "+short +tcp host.example"), "198.51.100.7\n");
  EXPECT_EQ(upstream.queries_for("host.example"), 1);  // the rest came from the cache
  // dnsmasq's NXDOMAIN for its local domain carries no SOA, so no negative
  // TTL: not cached (RFC 2308), both reach the upstream. SOA-carrying
  // negative answers are covered in dns_answer_cache_test.
  EXPECT_THAT(dig(front_, "missing.example"), HasSubstr("status: NXDOMAIN"));
  EXPECT_THAT(dig(front_, "missing.example"), HasSubstr("status: NXDOMAIN"));
  EXPECT_EQ(upstream.queries_for("missing.example"), 2);
}

TEST_F(DnsServerTest, DeadUpstreamTimesOutToTheNextThenServfail) {
  if (!have("dnsmasq")) GTEST_SKIP() << "dnsmasq missing: run scripts/setup";
  Dnsmasq upstream({"--address=/ext.example/192.0.2.55"});
  asio::io_context io;
  udp::socket silent(io, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));  // never reads
  const auto timeout = std::chrono::milliseconds(400);
  {
    start(ForwarderConfig{{silent.local_endpoint(), upstream.endpoint()}, timeout});
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(dig(front_, "+short ext.example"), "192.0.2.55\n");
    EXPECT_GE(std::chrono::steady_clock::now() - t0, timeout);
  }
  harness_.reset();
  start(ForwarderConfig{{silent.local_endpoint()}, timeout});
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THAT(dig(front_, "ext.example"), HasSubstr("status: SERVFAIL"));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, timeout);
  EXPECT_EQ(harness_->on_loop([&] { return harness_->server().forwarder().in_flight(); }), 0u);
}

// An upstream that answers every UDP query truncated and the full answer
// over TCP.
class TruncatingUpstream {
 public:
  TruncatingUpstream()
      : udp_(io_, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0)),
        tcp_(io_, tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), udp_.local_endpoint().port())) {
    serve_udp();
    serve_tcp();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TruncatingUpstream() {
    io_.stop();
    thread_.join();
  }
  udp::endpoint endpoint() const { return udp_.local_endpoint(); }
  std::atomic<int> udp_queries{0}, tcp_queries{0};

 private:
  // The query cut after its question, made a response.
  static std::vector<uint8_t> respond(std::vector<uint8_t> q, bool truncated) {
    std::size_t at = 12;
    while (at < q.size() && q[at] != 0) at += q[at] + 1u;
    q.resize(std::min(q.size(), at + 5));
    q[2] |= 0x80;
    if (truncated) q[2] |= 0x02;
    q[3] = 0x80;
    q[6] = q[7] = q[8] = q[9] = q[10] = q[11] = 0;
    if (!truncated) {
      q[7] = 1;
      const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 9};
      q.insert(q.end(), std::begin(rr), std::end(rr));
    }
    return q;
  }
  void serve_udp() {
    udp_.async_receive_from(asio::buffer(buf_), peer_, [this](boost::system::error_code ec, std::size_t n) {
      if (ec) return;
      ++udp_queries;
      udp_.send_to(asio::buffer(respond({buf_.begin(), buf_.begin() + static_cast<long>(n)}, true)), peer_);
      serve_udp();
    });
  }
  void serve_tcp() {
    tcp_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      std::array<uint8_t, 2> len{};
      boost::system::error_code e;
      asio::read(s, asio::buffer(len), e);
      std::vector<uint8_t> q(static_cast<std::size_t>(len[0] << 8 | len[1]));
      asio::read(s, asio::buffer(q), e);
      if (!e) {
        ++tcp_queries;
        auto a = respond(q, false);
        std::vector<uint8_t> frame = {static_cast<uint8_t>(a.size() >> 8), static_cast<uint8_t>(a.size())};
        frame.insert(frame.end(), a.begin(), a.end());
        asio::write(s, asio::buffer(frame), e);
      }
      serve_tcp();
    });
  }
  asio::io_context io_;
  udp::socket udp_;
  tcp::acceptor tcp_;
  std::array<uint8_t, 4096> buf_{};
  udp::endpoint peer_;
  std::thread thread_;
};

TEST_F(DnsServerTest, TruncatedUpstreamAnswerIsRetriedOverTcp) {
  TruncatingUpstream upstream;
  start(ForwarderConfig{{upstream.endpoint()}});
  EXPECT_EQ(dig(front_, "+short big.example"), "203.0.113.9\n");
  EXPECT_EQ(upstream.udp_queries, 1);
  EXPECT_EQ(upstream.tcp_queries, 1);
}

TEST_F(DnsServerTest, LargeAnswerIsTruncatedOverUdpAndWholeOverTcp) {
  std::vector<Ipv4> many;
  for (int i = 1; i <= 60; ++i) many.push_back(Ipv4(static_cast<uint32_t>(0x0a000300 + i)));
  view_.set_network("front", {Service{"big", EndpointMode::dnsrr, {}, many, {}}}, {});
  start();
  auto udp_only = dig(front_, "+noedns +ignore big");
  EXPECT_THAT(udp_only, HasSubstr("flags: qr aa tc rd ra"));
  EXPECT_THAT(udp_only, HasSubstr("ANSWER: 0"));
  EXPECT_EQ(lines(dig(front_, "+short +noedns big")).size(), 60u);  // dig retries over TCP
  EXPECT_EQ(lines(dig(front_, "+short +tcp big")).size(), 60u);
  // An EDNS0 client with a large enough buffer gets it all over UDP.
  auto edns = dig(front_, "+bufsize=4096 +ignore big");
  EXPECT_THAT(edns, Not(HasSubstr(" tc ")));
  EXPECT_THAT(edns, HasSubstr("ANSWER: 60"));
}

TEST_F(DnsServerTest, TcpConnectionsAreCapped) {
  start({}, ServerLimits{.max_tcp_connections = 2});
  asio::io_context io;
  std::vector<tcp::socket> held;
  for (int i = 0; i < 2; ++i) {
    held.emplace_back(io);
    held.back().connect(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), front_));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_THAT(dig(front_, "+tcp web"), Not(HasSubstr("status: NOERROR")));
  held.clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(dig(front_, "+short +tcp web"), "10.0.1.2\n");
  EXPECT_EQ(dig(front_, "+short web"), "10.0.1.2\n");  // UDP never was
}

}  // namespace
}  // namespace weft::dns::testing

namespace weft::dns::testing {
namespace {

TEST_F(DnsServerTest, ForwardsInFlightAreBounded) {
  asio::io_context io;
  udp::socket silent(io, udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));  // never answers
  ForwarderConfig config{{silent.local_endpoint()}, std::chrono::milliseconds(1500)};
  config.max_in_flight = 1;
  start(config);
  // The first waits on the silent upstream; the second is over the bound and
  // gets SERVFAIL at once, long before the timeout.
  EXPECT_FALSE(send_query(front_, make_query("one.example", 1), std::chrono::milliseconds(100)));
  const auto t0 = std::chrono::steady_clock::now();
  auto answer = send_query(front_, make_query("two.example", 1), std::chrono::milliseconds(1000));
  ASSERT_TRUE(answer);
  EXPECT_EQ(rcode_of(*answer), 2);  // SERVFAIL
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
}

}  // namespace
}  // namespace weft::dns::testing

namespace weft::dns::testing {
namespace {

TEST_F(DnsServerTest, RemovedRecordsAndContextsStopAtOnce) {
  start();
  ASSERT_EQ(dig(front_, "+short client"), "10.0.1.20\n");
  // A detach: the endpoint leaves the view; the next query no longer finds it
  // (not ours any more, and with no upstream that is SERVFAIL).
  view_.set_network("front", {}, {});
  auto after = dig(front_, "client");
  EXPECT_THAT(after, Not(HasSubstr("10.0.1.20")));
  EXPECT_THAT(after, HasSubstr("status: SERVFAIL"));
  // The endpoint's sockets go with its context.
  harness_->on_loop([&] {
    harness_->server().remove_context("ep-front");
    return 0;
  });
  EXPECT_FALSE(send_query(front_, make_query("web", 1), std::chrono::milliseconds(300)));
  EXPECT_EQ(dig(back_, "+short db"), "10.0.2.2\n");
}

}  // namespace
}  // namespace weft::dns::testing
