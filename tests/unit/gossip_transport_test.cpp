// The in-process transport and the stream errors StreamConnection reports
// over it (typed codes, not strings).
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "control/gossip/inprocess_transport.h"
#include "control/gossip/stream_conn.h"

namespace gossip = weft::control::gossip;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

gossip::HostPort at(std::uint16_t port) { return {asio::ip::make_address("127.0.0.1"), port}; }

class GossipTransport : public ::testing::Test {
 protected:
  void SetUp() override {
    server = network->transport();
    client = network->transport();
    server_port = server->listen(
        at(0), [&](gossip::ByteView p, const gossip::HostPort& from) { packets.emplace_back(std::string(p.begin(), p.end()), from); },
        [&](std::unique_ptr<gossip::ByteStream> s) { accepted.push_back(std::move(s)); });
    client->listen(at(0), [](gossip::ByteView, const gossip::HostPort&) {}, [](std::unique_ptr<gossip::ByteStream>) {});
  }

  // A StreamConnection reading one message from what the client side sends.
  std::optional<gossip::StreamError> read_error_after(const std::function<void(gossip::ByteStream&)>& client_does,
                                                      std::chrono::milliseconds deadline = 1s) {
    std::unique_ptr<gossip::ByteStream> dialled;
    client->dial(at(server_port), std::chrono::steady_clock::now() + 1s,
                 [&](const boost::system::error_code& ec, std::unique_ptr<gossip::ByteStream> s) {
                   EXPECT_FALSE(ec) << ec.message();
                   dialled = std::move(s);
                 });
    run_for(20ms);
    EXPECT_TRUE(dialled);
    EXPECT_EQ(accepted.size(), 1u);
    if (!dialled || accepted.empty()) return std::nullopt;
    auto conn = std::make_shared<gossip::StreamConnection>(io.get_executor(), std::move(accepted.back()), nullptr,
                                                           false);
    conn->set_deadline(std::chrono::steady_clock::now() + deadline);
    std::optional<gossip::StreamError> error;
    conn->read_message([&](std::optional<gossip::StreamMessage> msg, const gossip::StreamError& e) {
      EXPECT_FALSE(msg.has_value());
      error = e;
    });
    client_does(*dialled);
    const auto until = std::chrono::steady_clock::now() + deadline + 1s;
    while (!error && std::chrono::steady_clock::now() < until) run_for(10ms);
    return error;
  }

  // The io_context stops whenever it runs out of work; start it again each time.
  void run_for(std::chrono::milliseconds d) {
    io.restart();
    io.run_for(d);
  }

  asio::io_context io;
  std::shared_ptr<gossip::InProcessNetwork> network = gossip::InProcessNetwork::create(io);
  std::unique_ptr<gossip::Transport> server, client;
  std::uint16_t server_port = 0;
  std::vector<std::pair<std::string, gossip::HostPort>> packets;
  std::vector<std::unique_ptr<gossip::ByteStream>> accepted;
};

}  // namespace

TEST_F(GossipTransport, PacketsArriveWithTheSendersAddressUnlessCutOff) {
  const std::string hello = "hello";
  client->send_packet(at(server_port), gossip::ByteView(reinterpret_cast<const std::uint8_t*>(hello.data()), 5));
  run_for(20ms);
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].first, "hello");
  EXPECT_NE(packets[0].second.port, server_port);

  network->drop_packets(at(server_port));
  client->send_packet(at(server_port), gossip::ByteView(reinterpret_cast<const std::uint8_t*>(hello.data()), 5));
  run_for(20ms);
  EXPECT_EQ(packets.size(), 1u);
}

TEST_F(GossipTransport, DialToNobodyIsRefusedAndToACutOffNodeTimesOut) {
  std::optional<boost::system::error_code> refused, timed_out;
  client->dial(at(1), std::chrono::steady_clock::now() + 1s,
               [&](const boost::system::error_code& ec, std::unique_ptr<gossip::ByteStream>) { refused = ec; });
  network->cut_off(at(server_port));
  client->dial(at(server_port), std::chrono::steady_clock::now() + 50ms,
               [&](const boost::system::error_code& ec, std::unique_ptr<gossip::ByteStream>) { timed_out = ec; });
  run_for(200ms);
  ASSERT_TRUE(refused && timed_out);
  EXPECT_EQ(*refused, asio::error::connection_refused);
  EXPECT_EQ(*timed_out, asio::error::timed_out);
  EXPECT_EQ(gossip::describe(*timed_out), "timed out");
}

TEST_F(GossipTransport, PeerClosingWithoutSendingIsNotAFailure) {
  auto error = read_error_after([](gossip::ByteStream& s) { s.close(); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, gossip::StreamErrc::closed_before_message);
}

TEST_F(GossipTransport, GarbageIsMalformedWithTheDecodersReason) {
  static const std::uint8_t garbage[] = {0xEE, 1, 2, 3};
  auto error = read_error_after([](gossip::ByteStream& s) {
    s.async_write(asio::buffer(garbage), [](const boost::system::error_code&, std::size_t) {});
  });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, gossip::StreamErrc::malformed);
  EXPECT_FALSE(error->detail.empty());
  EXPECT_EQ(error->message(), error->detail);
}

TEST_F(GossipTransport, SilentPeerTimesOutAtTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  auto error = read_error_after([](gossip::ByteStream&) {}, 100ms);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, asio::error::timed_out);
  EXPECT_EQ(error->message(), "timed out");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
}

TEST_F(GossipTransport, PeerClosingMidMessageIsAnError) {
  // A push/pull type byte, then nothing: the message is cut short.
  static const std::uint8_t partial[] = {6};
  auto error = read_error_after([](gossip::ByteStream& s) {
    s.async_write(asio::buffer(partial), [](const boost::system::error_code&, std::size_t) {});
    s.close();
  });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, asio::error::eof);
}
