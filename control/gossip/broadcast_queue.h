// Messages waiting to be piggybacked on gossip, with memberlist's
// TransmitLimitedQueue semantics: each message is sent up to
// retransmit_mult * ceil(log10(n + 1)) times; fresher messages (fewer
// transmits) go first and, among those, the largest that still fits; queueing
// a message with a key drops any older message with the same key (e.g. a new
// `alive` for a node supersedes its `suspect`).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

int retransmit_limit(int retransmit_mult, std::size_t num_nodes);

class BroadcastQueue {
 public:
  // Called once when the message will not be sent again (limit reached,
  // invalidated by a newer message with the same key, or queue reset).
  using Finished = std::function<void()>;

  BroadcastQueue(int retransmit_mult, std::function<std::size_t()> num_nodes)
      : retransmit_mult_(retransmit_mult), num_nodes_(std::move(num_nodes)) {}

  // An empty key means the message never invalidates another.
  void queue(Bytes msg, std::string key = {}, Finished finished = {});

  // Takes messages whose sizes (each plus `overhead`) fit in `limit` bytes.
  std::vector<Bytes> get(std::size_t overhead, std::size_t limit);

  std::size_t size() const { return items_.size(); }
  // Drops the most-transmitted messages until at most `max_retain` remain.
  void prune(std::size_t max_retain);
  void reset();

 private:
  struct Item {
    int transmits = 0;
    std::int64_t id = 0;
    Bytes msg;
    std::string key;
    Finished finished;
  };
  struct Order {
    bool operator()(const std::shared_ptr<Item>& a, const std::shared_ptr<Item>& b) const {
      if (a->transmits != b->transmits) return a->transmits < b->transmits;
      if (a->msg.size() != b->msg.size()) return a->msg.size() > b->msg.size();
      return a->id > b->id;
    }
  };

  void finish(Item& item);
  void erase(const std::shared_ptr<Item>& item);

  int retransmit_mult_;
  std::function<std::size_t()> num_nodes_;
  std::set<std::shared_ptr<Item>, Order> items_;
  std::map<std::string, std::shared_ptr<Item>> by_key_;
  std::int64_t next_id_ = 0;
};

}  // namespace weft::control::gossip
