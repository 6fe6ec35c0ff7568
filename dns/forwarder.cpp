#include "dns/forwarder.h"

#include <sys/random.h>
#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

#include "dns/wire.h"

namespace weft::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t max_unique_ids = 32768;  // half the ID space: a free ID is found in ~2 draws at worst

// Where the single question of a query ends, or header_size when it has
// not exactly one question with plain labels (then answers are matched on
// ID and socket alone).
std::size_t question_end(std::span<const uint8_t> q) {
  if (q.size() < header_size || q[4] != 0 || q[5] != 1) return header_size;
  std::size_t at = header_size;
  while (at < q.size() && q[at] != 0) {
    if (q[at] > 63) return header_size;  // a compression pointer has no place in a query's question
    at += 1u + q[at];
  }
  at += 5;  // the root label, type, class
  return at <= q.size() ? at : header_size;
}

bool ascii_iequal(uint8_t a, uint8_t b) {
  if (a >= 'A' && a <= 'Z') a = static_cast<uint8_t>(a - 'A' + 'a');
  if (b >= 'A' && b <= 'Z') b = static_cast<uint8_t>(b - 'A' + 'a');
  return a == b;
}

}  // namespace

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

struct Forwarder::UpstreamSocket {
  UpstreamSocket(asio::io_context& io, std::size_t u) : socket(io), upstream(u) {}
  udp::socket socket;
  std::size_t upstream;
  std::size_t waiting = 0;  // queries whose answer is due on this socket
  std::size_t uses = 0;
  bool retiring = false;
};

struct Forwarder::TcpAttempt {
  explicit TcpAttempt(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::vector<uint8_t> frame;
  std::array<uint8_t, 2> length{};
  std::vector<uint8_t> buffer;
};

struct Forwarder::Slot {
  bool in_use = false;
  std::vector<uint8_t> query;  // with our ID; its capacity stays for the next query
  std::size_t question_end = header_size;
  uint16_t client_id = 0;
  uint16_t upstream_id = 0;
  std::optional<std::string> cache_key;
  Done done;
  std::size_t upstream = 0;
  uint64_t attempt = 0;  // handlers of an earlier attempt see a newer number and stop
  std::shared_ptr<UpstreamSocket> socket;  // while a UDP attempt waits
  std::shared_ptr<TcpAttempt> tcp;         // while a TCP attempt runs
  Clock::time_point deadline;
  bool armed = false;
  SlotIndex previous = none, next = none;  // in the deadline list
};

Forwarder::Forwarder(asio::io_context& io, ForwarderConfig config)
    : io_(io),
      config_(std::move(config)),
      cache_(config_.cache_entries, config_.max_cache_ttl_seconds),
      pools_(config_.upstreams.size()),
      next_in_pool_(config_.upstreams.size(), 0),
      timer_(io) {
  config_.max_in_flight = std::min(config_.max_in_flight, max_unique_ids);
  config_.sockets_per_upstream = std::max<std::size_t>(config_.sockets_per_upstream, 1);
  config_.queries_per_socket = std::max<std::size_t>(config_.queries_per_socket, 1);
  by_id_.reserve(config_.max_in_flight);
}

Forwarder::~Forwarder() {
  *alive_ = false;
  boost::system::error_code ec;
  for (auto& pool : pools_)
    for (auto& s : pool) s->socket.close(ec);
  for (auto& s : retiring_) s->socket.close(ec);
  for (auto& slot : slots_)
    if (slot->tcp) slot->tcp->socket.close(ec);
}

void Forwarder::stop() {
  for (SlotIndex k = 0; k < slots_.size(); ++k)
    if (slots_[k]->in_use) finish(k, error_reply(slots_[k]->query, LDNS_RCODE_SERVFAIL));
  boost::system::error_code ec;
  for (auto& pool : pools_) {
    for (auto& s : pool) s->socket.close(ec);
    pool.clear();
  }
  for (auto& s : retiring_) s->socket.close(ec);
  retiring_.clear();
  timer_.cancel();
}

std::size_t Forwarder::upstream_sockets() const {
  std::size_t n = retiring_.size();
  for (const auto& pool : pools_) n += pool.size();
  return n;
}

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
  if (in_flight_ >= config_.max_in_flight || config_.upstreams.empty()) {
    done(error_reply(query, LDNS_RCODE_SERVFAIL));
    return;
  }
  SlotIndex index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<SlotIndex>(slots_.size());
    slots_.push_back(std::make_unique<Slot>());
  }
  Slot& slot = *slots_[index];
  uint16_t id;
  do id = random_id();
  while (by_id_.contains(id));
  by_id_.emplace(id, index);
  slot.in_use = true;
  slot.query.assign(query.begin(), query.end());
  slot.question_end = question_end(query);
  slot.client_id = client_id;
  slot.upstream_id = id;
  set_wire_id(slot.query, id);
  slot.cache_key = std::move(key);
  slot.done = std::move(done);
  slot.upstream = 0;
  ++in_flight_;
  try_udp(index);
}

uint16_t Forwarder::random_id() {
  if (random_used_ + 2 > random_bytes_.size()) {
    std::size_t got = 0;
    while (got < random_bytes_.size()) {
      const ssize_t n = ::getrandom(random_bytes_.data() + got, random_bytes_.size() - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        // Cannot happen once the pool is initialised (the kernel's own
        // guarantee for getrandom without GRND_NONBLOCK); fail loudly
        // rather than send guessable IDs.
        throw std::system_error(errno, std::generic_category(), "getrandom");
      }
      got += static_cast<std::size_t>(n);
    }
    random_used_ = 0;
  }
  const uint16_t id = static_cast<uint16_t>(random_bytes_[random_used_] << 8 | random_bytes_[random_used_ + 1]);
  random_used_ += 2;
  return id;
}

std::shared_ptr<Forwarder::UpstreamSocket> Forwarder::socket_for(std::size_t upstream) {
  auto& pool = pools_[upstream];
  if (pool.size() < config_.sockets_per_upstream) {
    auto s = std::make_shared<UpstreamSocket>(io_, upstream);
    const auto& endpoint = config_.upstreams[upstream];
    boost::system::error_code ec;
    s->socket.open(endpoint.protocol(), ec);
    // Connected: the kernel drops datagrams from anyone but the upstream, and
    // gives the socket a random ephemeral port.
    if (!ec) s->socket.connect(endpoint, ec);
    if (!ec) s->socket.non_blocking(true, ec);
    if (ec) {
      spdlog::debug("dns: upstream {}: {}", endpoint.address().to_string(), ec.message());
      return nullptr;
    }
    pool.push_back(s);
    wait_answers(s);
    return s;
  }
  return pool[next_in_pool_[upstream]++ % pool.size()];
}

void Forwarder::wait_answers(const std::shared_ptr<UpstreamSocket>& s) {
  s->socket.async_wait(udp::socket::wait_read, [this, s, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive || !s->socket.is_open()) return;
    read_answers(s);
    if (s->socket.is_open()) wait_answers(s);
  });
}

void Forwarder::read_answers(const std::shared_ptr<UpstreamSocket>& s) {
  // Up to answer_batch answers per recvmmsg, and no call that only says
  // "nothing more": the wait that follows re-arms the socket in epoll, which
  // reports it at once if answers are still queued. Each slot holds the
  // largest UDP answer; the kernel touches only the pages it writes.
  if (!answer_buffers_) answer_buffers_.reset(new uint8_t[answer_batch * max_udp_answer]);
  std::array<mmsghdr, answer_batch> messages;
  std::array<iovec, answer_batch> iovs;
  // Bounded: a flood on one socket yields to the rest of the loop.
  for (int round = 0; round < 8 && s->socket.is_open(); ++round) {
    for (std::size_t i = 0; i < answer_batch; ++i) {
      iovs[i] = iovec{answer_buffers_.get() + i * max_udp_answer, max_udp_answer};
      messages[i] = mmsghdr{};
      messages[i].msg_hdr.msg_iov = &iovs[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = ::recvmmsg(s->socket.native_handle(), messages.data(), answer_batch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      fail_waiting(s);  // ICMP unreachable and the like
      continue;
    }
    for (int i = 0; i < n && s->socket.is_open(); ++i) {
      const auto k = static_cast<std::size_t>(i);
      on_udp_answer(*s, std::span<const uint8_t>(answer_buffers_.get() + k * max_udp_answer, messages[k].msg_len));
    }
    if (static_cast<std::size_t>(n) < answer_batch) return;
  }
}

void Forwarder::on_udp_answer(UpstreamSocket& s, std::span<const uint8_t> answer) {
  if (answer.size() < header_size || !wire_is_response(answer)) return;
  auto found = by_id_.find(wire_id(answer));
  if (found == by_id_.end()) return;  // late (timed out) or forged: dropped
  const SlotIndex index = found->second;
  Slot& slot = *slots_[index];
  if (slot.socket.get() != &s) return;  // not the socket (or transport) this attempt waits on
  if (answer[4] != 0 || answer[5] != 0) {  // a question, then it must be ours
    const std::size_t end = slot.question_end;
    if (answer.size() < end || answer[4] != slot.query[4] || answer[5] != slot.query[5] ||
        !std::equal(answer.begin() + header_size, answer.begin() + static_cast<std::ptrdiff_t>(end),
                    slot.query.begin() + header_size, ascii_iequal))
      return;
  }
  if (wire_truncated(answer)) {
    try_tcp(index);
    return;
  }
  const auto rcode = wire_rcode(answer);
  if (rcode == LDNS_RCODE_SERVFAIL || rcode == LDNS_RCODE_REFUSED) {
    next_upstream(index);
    return;
  }
  finish(index, std::vector<uint8_t>(answer.begin(), answer.end()));
}

void Forwarder::fail_waiting(const std::shared_ptr<UpstreamSocket>& s) {
  // The socket's error is the upstream's (it is connected to it alone), and
  // the kernel reports it once, to whichever call comes first: every query
  // waiting on the socket moves on, not only the one that saw it.
  std::vector<SlotIndex> moved;
  for (SlotIndex k = 0; k < slots_.size(); ++k)
    if (slots_[k]->in_use && slots_[k]->socket == s) moved.push_back(k);
  for (auto k : moved) next_upstream(k);
}

void Forwarder::release_socket(Slot& slot) {
  if (!slot.socket) return;
  auto s = std::move(slot.socket);
  slot.socket.reset();
  if (--s->waiting == 0 && s->retiring) {
    boost::system::error_code ec;
    s->socket.close(ec);
    std::erase(retiring_, s);
  }
}

void Forwarder::next_upstream(SlotIndex index) {
  Slot& slot = *slots_[index];
  release_socket(slot);
  ++slot.upstream;
  if (slot.upstream >= config_.upstreams.size()) {
    finish(index, error_reply(slot.query, LDNS_RCODE_SERVFAIL));
    return;
  }
  try_udp(index);
}

void Forwarder::try_udp(SlotIndex index) {
  Slot& slot = *slots_[index];
  ++slot.attempt;
  release_socket(slot);
  if (slot.tcp) {
    boost::system::error_code ec;
    slot.tcp->socket.close(ec);
    slot.tcp.reset();
  }
  auto s = socket_for(slot.upstream);
  if (!s) {
    next_upstream(index);
    return;
  }
  if (::send(s->socket.native_handle(), slot.query.data(), slot.query.size(), MSG_DONTWAIT) < 0 &&
      errno != EAGAIN && errno != EWOULDBLOCK) {
    // An ICMP error from an earlier datagram surfaces here: this upstream is
    // down, for the queries sent on this socket before as well.
    spdlog::debug("dns: upstream {}: send: {}", config_.upstreams[slot.upstream].address().to_string(),
                  std::strerror(errno));
    fail_waiting(s);
    next_upstream(index);
    return;
  }
  // A full send buffer drops the query as the network could: the timeout
  // moves it on.
  slot.socket = s;
  ++s->waiting;
  if (++s->uses >= config_.queries_per_socket) {
    s->retiring = true;
    std::erase(pools_[s->upstream], s);
    retiring_.push_back(s);
  }
  arm(index);
}

void Forwarder::try_tcp(SlotIndex index) {
  Slot& slot = *slots_[index];
  const uint64_t attempt = ++slot.attempt;
  release_socket(slot);
  const auto& upstream = config_.upstreams[slot.upstream];
  auto t = std::make_shared<TcpAttempt>(io_);
  slot.tcp = t;
  arm(index);
  // True (and the attempt over) when this attempt is stale or failed.
  auto failed = [this, index, attempt, alive = alive_](boost::system::error_code e) {
    if (!*alive) return true;
    Slot& s = *slots_[index];
    if (!s.in_use || s.attempt != attempt) return true;
    if (e) {
      next_upstream(index);
      return true;
    }
    return false;
  };
  t->frame.resize(slot.query.size() + 2);
  t->frame[0] = static_cast<uint8_t>(slot.query.size() >> 8);
  t->frame[1] = static_cast<uint8_t>(slot.query.size());
  std::copy(slot.query.begin(), slot.query.end(), t->frame.begin() + 2);
  t->socket.async_connect(tcp::endpoint(upstream.address(), upstream.port()), [this, index, t, failed](
                                                                                 boost::system::error_code e) {
    if (failed(e)) return;
    asio::async_write(t->socket, asio::buffer(t->frame), [this, index, t, failed](boost::system::error_code e, std::size_t) {
      if (failed(e)) return;
      asio::async_read(t->socket, asio::buffer(t->length), [this, index, t, failed](boost::system::error_code e, std::size_t) {
        if (failed(e)) return;
        const std::size_t size = t->length[0] << 8 | t->length[1];
        if (size < header_size) {
          failed(asio::error::message_size);
          return;
        }
        t->buffer.resize(size);
        asio::async_read(t->socket, asio::buffer(t->buffer), [this, index, t, failed](boost::system::error_code e, std::size_t) {
          if (failed(e)) return;
          Slot& slot = *slots_[index];
          if (wire_id(t->buffer) != slot.upstream_id || !wire_is_response(t->buffer)) {
            failed(asio::error::invalid_argument);
            return;
          }
          const auto rcode = wire_rcode(t->buffer);
          if (rcode == LDNS_RCODE_SERVFAIL || rcode == LDNS_RCODE_REFUSED) {
            failed(asio::error::connection_refused);
            return;
          }
          finish(index, std::move(t->buffer));
        });
      });
    });
  });
}

void Forwarder::finish(SlotIndex index, std::vector<uint8_t> answer) {
  Slot& slot = *slots_[index];
  if (!slot.in_use) return;
  disarm(index);
  release_socket(slot);
  if (slot.tcp) {
    boost::system::error_code ec;
    slot.tcp->socket.close(ec);
    slot.tcp.reset();
  }
  ++slot.attempt;
  by_id_.erase(slot.upstream_id);
  if (slot.cache_key && wire_rcode(answer) != LDNS_RCODE_SERVFAIL)
    cache_.put(*slot.cache_key, answer, AnswerCache::Clock::now());
  set_wire_id(answer, slot.client_id);
  auto done = std::move(slot.done);
  slot.done = nullptr;
  slot.cache_key.reset();
  slot.in_use = false;
  --in_flight_;
  free_slots_.push_back(index);
  // Last: the callback may forward again and reuse this slot.
  done(std::move(answer));
}

void Forwarder::arm(SlotIndex index) {
  disarm(index);
  Slot& slot = *slots_[index];
  slot.deadline = Clock::now() + config_.timeout;
  slot.armed = true;
  slot.previous = last_deadline_;
  slot.next = none;
  if (last_deadline_ != none)
    slots_[last_deadline_]->next = index;
  else
    first_deadline_ = index;
  last_deadline_ = index;
  schedule_timer();
}

void Forwarder::disarm(SlotIndex index) {
  Slot& slot = *slots_[index];
  if (!slot.armed) return;
  if (slot.previous != none)
    slots_[slot.previous]->next = slot.next;
  else
    first_deadline_ = slot.next;
  if (slot.next != none)
    slots_[slot.next]->previous = slot.previous;
  else
    last_deadline_ = slot.previous;
  slot.armed = false;
  slot.previous = slot.next = none;
}

void Forwarder::schedule_timer() {
  // An armed timer fires no later than the first deadline (deadlines only
  // get later); when it fires it re-arms for the then first one.
  if (timer_armed_ || first_deadline_ == none) return;
  timer_armed_ = true;
  timer_.expires_at(slots_[first_deadline_]->deadline);
  timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (!*alive) return;
    timer_armed_ = false;
    if (ec) return;
    on_timer();
  });
}

void Forwarder::on_timer() {
  const auto now = Clock::now();
  while (first_deadline_ != none && slots_[first_deadline_]->deadline <= now) {
    const SlotIndex index = first_deadline_;
    disarm(index);
    next_upstream(index);  // may re-arm it (at the end of the list)
  }
  schedule_timer();
}

}  // namespace weft::dns
