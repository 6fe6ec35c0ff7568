#include "control/gossip/broadcast_queue.h"

#include <cmath>

namespace weft::control::gossip {

int retransmit_limit(int retransmit_mult, std::size_t num_nodes) {
  const double scale = std::ceil(std::log10(static_cast<double>(num_nodes) + 1.0));
  return retransmit_mult * static_cast<int>(scale);
}

void BroadcastQueue::finish(Item& item) {
  if (item.finished) {
    auto f = std::move(item.finished);
    item.finished = nullptr;
    f();
  }
}

void BroadcastQueue::erase(const std::shared_ptr<Item>& item) {
  items_.erase(item);
  if (!item->key.empty()) {
    auto it = by_key_.find(item->key);
    if (it != by_key_.end() && it->second == item) by_key_.erase(it);
  }
  if (items_.empty()) next_id_ = 0;
}

void BroadcastQueue::queue(Bytes msg, std::string key, Finished finished) {
  auto item = std::make_shared<Item>();
  item->id = ++next_id_;
  item->msg = std::move(msg);
  item->key = std::move(key);
  item->finished = std::move(finished);
  if (!item->key.empty()) {
    if (auto it = by_key_.find(item->key); it != by_key_.end()) {
      auto old = it->second;
      erase(old);
      finish(*old);
      if (next_id_ == 0) item->id = ++next_id_;
    }
    by_key_[item->key] = item;
  }
  items_.insert(item);
}

std::vector<Bytes> BroadcastQueue::get(std::size_t overhead, std::size_t limit) {
  std::vector<Bytes> out;
  if (items_.empty()) return out;
  const int transmit_limit = retransmit_limit(retransmit_mult_, num_nodes_ ? num_nodes_() : 1);

  std::size_t used = 0;
  std::vector<std::shared_ptr<Item>> reinsert;
  std::vector<std::shared_ptr<Item>> done;  // finished callbacks run last: they may queue more
  const int min_tr = (*items_.begin())->transmits;
  const int max_tr = (*items_.rbegin())->transmits;
  for (int tr = min_tr; tr <= max_tr;) {
    if (used + overhead >= limit) break;
    const std::size_t free = limit - used - overhead;
    // Within a tier messages are ordered longest first, so the first one that
    // fits is the largest that fits.
    std::shared_ptr<Item> pick;
    for (const auto& item : items_) {
      if (item->transmits < tr) continue;
      if (item->transmits > tr) break;
      if (item->msg.size() <= free) {
        pick = item;
        break;
      }
    }
    if (!pick) {
      ++tr;
      continue;
    }
    used += overhead + pick->msg.size();
    out.push_back(pick->msg);
    erase(pick);
    if (pick->transmits + 1 >= transmit_limit) {
      done.push_back(pick);
    } else {
      ++pick->transmits;
      reinsert.push_back(pick);
    }
  }
  for (auto& item : reinsert) {
    if (!item->key.empty()) {
      // A newer message with this key may not have been queued meanwhile
      // (single-threaded), so the key slot is ours again.
      by_key_[item->key] = item;
    }
    items_.insert(item);
  }
  for (auto& item : done) finish(*item);
  return out;
}

void BroadcastQueue::prune(std::size_t max_retain) {
  while (items_.size() > max_retain) {
    auto item = *items_.rbegin();
    erase(item);
    finish(*item);
  }
}

void BroadcastQueue::reset() {
  auto items = std::move(items_);
  items_.clear();
  by_key_.clear();
  next_id_ = 0;
  for (const auto& item : items) finish(*item);
}

}  // namespace weft::control::gossip
