#include "dns/forwarder.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <charconv>

#include "dns/wire.h"

namespace weft::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

std::optional<udp::endpoint> parse_upstream(std::string_view text) {
  std::string_view host = text;
  uint16_t port = 53;
  if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    auto port_text = text.substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 || value > 65535)
      return std::nullopt;
    port = static_cast<uint16_t>(value);
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address_v4(std::string(host), ec);
  if (ec) return std::nullopt;
  return udp::endpoint(address, port);
}

struct Forwarder::Job {
  explicit Job(asio::io_context& io) : udp_socket(io), tcp_socket(io), timer(io) {}
  std::vector<uint8_t> query;  // with our ID
  uint16_t client_id = 0;
  uint16_t upstream_id = 0;
  std::optional<std::string> cache_key;
  Done done;
  std::size_t upstream = 0;
  unsigned attempt = 0;  // handlers of an earlier attempt see a newer number and stop
  bool finished = false;
  udp::socket udp_socket;
  tcp::socket tcp_socket;
  asio::steady_timer timer;
  std::vector<uint8_t> buffer;
  std::array<uint8_t, 2> length{};
};

Forwarder::Forwarder(asio::io_context& io, ForwarderConfig config)
    : io_(io),
      config_(std::move(config)),
      cache_(config_.cache_entries, config_.max_cache_ttl_seconds),
      ids_(std::random_device{}()) {}

Forwarder::~Forwarder() { *alive_ = false; }

void Forwarder::forward(std::span<const uint8_t> query, Done done) {
  if (query.size() < header_size) return;
  const uint16_t client_id = wire_id(query);
  auto key = AnswerCache::key_of(query);
  if (key) {
    if (auto hit = cache_.get(*key, client_id, AnswerCache::Clock::now())) {
      done(std::move(*hit));
      return;
    }
  }
  if (*in_flight_ >= config_.max_in_flight || config_.upstreams.empty()) {
    done(error_reply(query, LDNS_RCODE_SERVFAIL));
    return;
  }
  auto job = std::make_shared<Job>(io_);
  job->query.assign(query.begin(), query.end());
  job->client_id = client_id;
  job->upstream_id = static_cast<uint16_t>(ids_());
  set_wire_id(job->query, job->upstream_id);
  job->cache_key = std::move(key);
  job->done = std::move(done);
  ++*in_flight_;
  try_udp(job);
}

void Forwarder::next_upstream(const std::shared_ptr<Job>& job) {
  ++job->upstream;
  if (job->upstream >= config_.upstreams.size()) {
    auto fail = error_reply(job->query, LDNS_RCODE_SERVFAIL);
    finish(job, std::move(fail));
    return;
  }
  try_udp(job);
}

void Forwarder::try_udp(const std::shared_ptr<Job>& job) {
  const unsigned attempt = ++job->attempt;
  boost::system::error_code ec;
  job->udp_socket.close(ec);
  job->tcp_socket.close(ec);
  const auto& upstream = config_.upstreams[job->upstream];
  job->udp_socket.open(upstream.protocol(), ec);
  if (!ec) job->udp_socket.connect(upstream, ec);  // only the upstream's answers get through
  if (ec) {
    spdlog::debug("dns: upstream {}: {}", upstream.address().to_string(), ec.message());
    next_upstream(job);
    return;
  }
  job->timer.expires_after(config_.timeout);
  job->timer.async_wait([this, job, attempt, alive = alive_](boost::system::error_code wait_ec) {
    if (wait_ec || !*alive || job->finished || job->attempt != attempt) return;
    next_upstream(job);
  });
  job->udp_socket.async_send(asio::buffer(job->query), [](boost::system::error_code, std::size_t) {});
  job->buffer.resize(65535);
  receive_udp(job, attempt);
}

void Forwarder::receive_udp(const std::shared_ptr<Job>& job, unsigned attempt) {
  job->udp_socket.async_receive(
      asio::buffer(job->buffer), [this, job, attempt, alive = alive_](boost::system::error_code rec, std::size_t n) {
        if (!*alive || job->finished || job->attempt != attempt) return;
        if (rec) {
          // ICMP unreachable and the like: this upstream is down.
          next_upstream(job);
          return;
        }
        std::span<const uint8_t> answer(job->buffer.data(), n);
        if (n < header_size || wire_id(answer) != job->upstream_id || !wire_is_response(answer)) {
          receive_udp(job, attempt);  // not ours: keep waiting within the timeout
          return;
        }
        if (wire_truncated(answer)) {
          try_tcp(job);
          return;
        }
        const auto rcode = wire_rcode(answer);
        if (rcode == LDNS_RCODE_SERVFAIL || rcode == LDNS_RCODE_REFUSED) {
          next_upstream(job);
          return;
        }
        finish(job, std::vector<uint8_t>(answer.begin(), answer.end()));
      });
}

void Forwarder::try_tcp(const std::shared_ptr<Job>& job) {
  const unsigned attempt = ++job->attempt;
  boost::system::error_code ec;
  job->udp_socket.close(ec);
  const auto& upstream = config_.upstreams[job->upstream];
  job->timer.expires_after(config_.timeout);
  job->timer.async_wait([this, job, attempt, alive = alive_](boost::system::error_code wait_ec) {
    if (wait_ec || !*alive || job->finished || job->attempt != attempt) return;
    next_upstream(job);
  });
  auto failed = [this, job, attempt, alive = alive_](boost::system::error_code e) {
    if (!*alive || job->finished || job->attempt != attempt) return true;
    if (e) {
      next_upstream(job);
      return true;
    }
    return false;
  };
  job->tcp_socket.async_connect(tcp::endpoint(upstream.address(), upstream.port()), [this, job, failed](
                                                                                        boost::system::error_code e) {
    if (failed(e)) return;
    auto frame = std::make_shared<std::vector<uint8_t>>(job->query.size() + 2);
    (*frame)[0] = static_cast<uint8_t>(job->query.size() >> 8);
    (*frame)[1] = static_cast<uint8_t>(job->query.size());
    std::copy(job->query.begin(), job->query.end(), frame->begin() + 2);
    asio::async_write(job->tcp_socket, asio::buffer(*frame), [this, job, failed, frame](boost::system::error_code e, std::size_t) {
      if (failed(e)) return;
      asio::async_read(job->tcp_socket, asio::buffer(job->length), [this, job, failed](boost::system::error_code e, std::size_t) {
        if (failed(e)) return;
        const std::size_t size = job->length[0] << 8 | job->length[1];
        if (size < header_size) {
          failed(asio::error::message_size);
          return;
        }
        job->buffer.resize(size);
        asio::async_read(job->tcp_socket, asio::buffer(job->buffer), [this, job, failed](boost::system::error_code e, std::size_t) {
          if (failed(e)) return;
          if (wire_id(job->buffer) != job->upstream_id || !wire_is_response(job->buffer)) {
            failed(asio::error::invalid_argument);
            return;
          }
          const auto rcode = wire_rcode(job->buffer);
          if (rcode == LDNS_RCODE_SERVFAIL || rcode == LDNS_RCODE_REFUSED) {
            failed(asio::error::connection_refused);
            return;
          }
          finish(job, std::move(job->buffer));
        });
      });
    });
  });
}

void Forwarder::finish(const std::shared_ptr<Job>& job, std::vector<uint8_t> answer) {
  if (job->finished) return;
  job->finished = true;
  boost::system::error_code ec;
  job->timer.cancel();
  job->udp_socket.close(ec);
  job->tcp_socket.close(ec);
  --*in_flight_;
  if (job->cache_key && wire_rcode(answer) != LDNS_RCODE_SERVFAIL)
    cache_.put(*job->cache_key, answer, AnswerCache::Clock::now());
  set_wire_id(answer, job->client_id);
  auto done = std::move(job->done);
  done(std::move(answer));
}

}  // namespace weft::dns
