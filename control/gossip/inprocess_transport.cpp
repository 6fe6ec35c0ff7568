#include "control/gossip/inprocess_transport.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <optional>

namespace weft::control::gossip {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// One direction of a connection.
struct Channel {
  Bytes data;
  bool writer_closed = false;
  bool reader_closed = false;
  asio::mutable_buffer read_into;
  ByteStream::Handler pending_read;
};

struct Pipe {
  explicit Pipe(asio::io_context& io) : io(io) {}
  asio::io_context& io;
  Channel a_to_b, b_to_a;

  // Completes a waiting read once there is data or the writer is gone.
  void serve(Channel& c) {
    if (!c.pending_read || (c.data.empty() && !c.writer_closed)) return;
    auto done = std::move(c.pending_read);
    c.pending_read = nullptr;
    if (c.data.empty()) {
      asio::post(io, [done] { done(asio::error::eof, 0); });
      return;
    }
    const std::size_t n = std::min(c.data.size(), c.read_into.size());
    std::memcpy(c.read_into.data(), c.data.data(), n);
    c.data.erase(c.data.begin(), c.data.begin() + static_cast<std::ptrdiff_t>(n));
    asio::post(io, [done, n] { done({}, n); });
  }
};

class PipeEnd final : public ByteStream {
 public:
  PipeEnd(std::shared_ptr<Pipe> pipe, bool a_side, HostPort remote)
      : pipe_(std::move(pipe)), a_side_(a_side), remote_(std::move(remote)) {}
  ~PipeEnd() override { close(); }

  void async_read_some(asio::mutable_buffer into, Handler done) override {
    Channel& in = incoming();
    if (in.reader_closed) {
      asio::post(pipe_->io, [done] { done(asio::error::operation_aborted, 0); });
      return;
    }
    in.read_into = into;
    in.pending_read = std::move(done);
    pipe_->serve(in);
  }

  void async_write(asio::const_buffer data, Handler done) override {
    Channel& out = outgoing();
    if (out.writer_closed) {
      asio::post(pipe_->io, [done] { done(asio::error::operation_aborted, 0); });
      return;
    }
    if (out.reader_closed) {
      asio::post(pipe_->io, [done] { done(asio::error::broken_pipe, 0); });
      return;
    }
    const auto* bytes = static_cast<const std::uint8_t*>(data.data());
    out.data.insert(out.data.end(), bytes, bytes + data.size());
    pipe_->serve(out);
    asio::post(pipe_->io, [done, n = data.size()] { done({}, n); });
  }

  void close() override {
    Channel& in = incoming();
    Channel& out = outgoing();
    if (in.reader_closed && out.writer_closed) return;
    in.reader_closed = true;
    in.data.clear();
    if (in.pending_read) {
      auto done = std::move(in.pending_read);
      in.pending_read = nullptr;
      asio::post(pipe_->io, [done] { done(asio::error::operation_aborted, 0); });
    }
    out.writer_closed = true;
    pipe_->serve(out);
  }

  const HostPort& remote() const override { return remote_; }

 private:
  Channel& incoming() { return a_side_ ? pipe_->b_to_a : pipe_->a_to_b; }
  Channel& outgoing() { return a_side_ ? pipe_->a_to_b : pipe_->b_to_a; }

  std::shared_ptr<Pipe> pipe_;
  bool a_side_;
  HostPort remote_;
};

void mark(std::set<HostPort>& set, const HostPort& at, bool member) {
  if (member) {
    set.insert(at);
  } else {
    set.erase(at);
  }
}

}  // namespace

class InProcessTransport final : public Transport {
 public:
  explicit InProcessTransport(std::shared_ptr<InProcessNetwork> net) : net_(std::move(net)) {}
  ~InProcessTransport() override { shutdown(); }

  std::uint16_t listen(const HostPort& bind, PacketHandler on_packet, StreamHandler on_stream) override {
    HostPort at = bind;
    if (at.port == 0) {
      while (net_->listeners_.contains(HostPort{at.ip, net_->next_port_})) ++net_->next_port_;
      at.port = net_->next_port_++;
    }
    if (net_->listeners_.contains(at)) {
      throw std::runtime_error(fmt::format("gossip: cannot bind {}: address in use", at.to_string()));
    }
    net_->listeners_[at] = this;
    address_ = at;
    on_packet_ = std::move(on_packet);
    on_stream_ = std::move(on_stream);
    return at.port;
  }

  void send_packet(const HostPort& to, ByteView packet) override {
    if (!address_ || !net_->packets_pass(*address_, to)) return;
    std::weak_ptr<InProcessNetwork> weak = net_;
    asio::post(net_->io_, [weak, to, from = *address_, bytes = Bytes(packet.begin(), packet.end())] {
      auto net = weak.lock();
      if (!net || !net->packets_pass(from, to)) return;
      auto it = net->listeners_.find(to);
      if (it == net->listeners_.end()) return;
      ++net->packets_delivered_;
      it->second->on_packet_(bytes, from);
    });
  }

  void dial(const HostPort& to, std::chrono::steady_clock::time_point deadline, DialHandler done) override {
    std::weak_ptr<InProcessNetwork> weak = net_;
    const HostPort from = address_.value_or(HostPort{});
    asio::post(net_->io_, [weak, to, from, deadline, done = std::move(done)] {
      auto net = weak.lock();
      if (!net) {
        done(asio::error::operation_aborted, nullptr);
        return;
      }
      if (!net->reachable(from, to)) {
        // A cut-off peer answers nothing; the dialler gives up at its deadline.
        auto timer = std::make_shared<asio::steady_timer>(net->io_, deadline);
        timer->async_wait([timer, done](const error_code&) { done(asio::error::timed_out, nullptr); });
        return;
      }
      auto it = net->listeners_.find(to);
      if (it == net->listeners_.end()) {
        done(asio::error::connection_refused, nullptr);
        return;
      }
      ++net->streams_opened_;
      auto pipe = std::make_shared<Pipe>(net->io_);
      it->second->on_stream_(std::make_unique<PipeEnd>(pipe, false, from));
      done({}, std::make_unique<PipeEnd>(pipe, true, to));
    });
  }

  void shutdown() override {
    if (!address_) return;
    net_->listeners_.erase(*address_);
    address_.reset();
  }

 private:
  std::shared_ptr<InProcessNetwork> net_;
  std::optional<HostPort> address_;
  PacketHandler on_packet_;
  StreamHandler on_stream_;
};

std::shared_ptr<InProcessNetwork> InProcessNetwork::create(asio::io_context& io) {
  return std::shared_ptr<InProcessNetwork>(new InProcessNetwork(io));
}

std::unique_ptr<Transport> InProcessNetwork::transport() {
  return std::make_unique<InProcessTransport>(shared_from_this());
}

void InProcessNetwork::cut_off(const HostPort& at, bool cut) { mark(cut_off_, at, cut); }

void InProcessNetwork::drop_packets(const HostPort& at, bool drop) { mark(packets_dropped_, at, drop); }

}  // namespace weft::control::gossip
