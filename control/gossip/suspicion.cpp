#include "control/gossip/suspicion.h"

#include <algorithm>
#include <cmath>

#include <boost/asio/post.hpp>

namespace weft::control::gossip {

using std::chrono::milliseconds;

milliseconds remaining_suspicion_time(int n, int k, milliseconds elapsed, milliseconds min, milliseconds max) {
  const double frac = std::log(static_cast<double>(n) + 1.0) / std::log(static_cast<double>(k) + 1.0);
  const double max_s = std::chrono::duration<double>(max).count();
  const double min_s = std::chrono::duration<double>(min).count();
  const double raw = max_s - frac * (max_s - min_s);
  auto timeout = milliseconds(static_cast<std::int64_t>(std::floor(1000.0 * raw)));
  if (timeout < min) timeout = min;
  return timeout - elapsed;
}

milliseconds suspicion_timeout(int suspicion_mult, std::size_t num_nodes, milliseconds probe_interval) {
  const double node_scale = std::max(1.0, std::log10(std::max(1.0, static_cast<double>(num_nodes))));
  // Same integer steps as memberlist: scale kept to 1/1000 precision.
  const auto scaled = static_cast<std::int64_t>(node_scale * 1000.0);
  return milliseconds(suspicion_mult * scaled * probe_interval.count() / 1000);
}

Suspicion::Suspicion(asio::io_context& io, const std::string& from, int expected, milliseconds min, milliseconds max,
                     Timeout on_timeout)
    : timer_(io),
      k_(expected),
      min_(min),
      max_(max),
      start_(std::chrono::steady_clock::now()),
      on_timeout_(std::move(on_timeout)),
      self_(std::make_shared<Suspicion*>(this)) {
  seen_.insert(from);
  arm(k_ < 1 ? min_ : max_);
}

Suspicion::~Suspicion() {
  self_.reset();
  timer_.cancel();
}

void Suspicion::arm(std::chrono::steady_clock::duration after) {
  timer_.expires_after(after);
  std::weak_ptr<Suspicion*> weak = self_;
  timer_.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    auto alive = weak.lock();
    if (!alive) return;
    Suspicion* s = *alive;
    // Copy: the callback usually destroys this Suspicion.
    auto fn = s->on_timeout_;
    fn(s->n_);
  });
}

bool Suspicion::confirm(const std::string& from) {
  if (n_ >= k_) return false;
  if (!seen_.insert(from).second) return false;
  ++n_;
  const auto elapsed =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start_);
  const auto remaining = remaining_suspicion_time(n_, k_, elapsed, min_, max_);
  arm(remaining > milliseconds::zero() ? remaining : milliseconds::zero());
  return true;
}

}  // namespace weft::control::gossip
