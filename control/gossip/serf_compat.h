// Enough of serf's protocol, layered on memberlist's Delegate hooks, for weft
// nodes to be first-class members of a serf cluster (hashicorp/serf
// serf/messages.go, serf/delegate.go):
//
//  * node meta = serf tags: magic byte 255 + msgpack map[string]string;
//  * user messages starting with serf's type byte: join/leave intents with a
//    Lamport time. Serf marks a member "left" (not "failed") only if a leave
//    intent newer than its join intent arrived before memberlist reports the
//    node gone, so a graceful weft leave sends one first;
//  * push/pull user state = serf's messagePushPull map, which serf decodes
//    with unknown keys ignored; weft's own state rides in an extra
//    "WeftState" key, so serf never logs a bad state prefix.
//
// weft's own gossip messages are prefixed with kWeftUserMessageType (0xF7).
// Serf types are 0..9 today; on an unknown type serf logs
// "[WARN] serf: Received message of unknown type: 247" and drops the message.
// weft applications talk to SerfCompat through the same Delegate interface
// memberlist uses, never seeing the prefix.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "control/gossip/broadcast_queue.h"
#include "control/gossip/log_limiter.h"
#include "control/gossip/memberlist.h"

namespace weft::control::gossip {

inline constexpr std::uint8_t kWeftUserMessageType = 0xF7;
inline constexpr std::uint8_t kSerfTagMagicByte = 255;

// serf's messageType numbering.
enum class SerfMessageType : std::uint8_t {
  kLeave = 0,
  kJoin = 1,
  kPushPull = 2,
  kUserEvent = 3,
  kQuery = 4,
  kQueryResponse = 5,
  kConflictResponse = 6,
  kKeyRequest = 7,
  kKeyResponse = 8,
  kRelay = 9,
};

using Tags = std::map<std::string, std::string>;

Bytes encode_serf_tags(const Tags& tags);
// Old serf protocols put just the role in the meta; that reads as {"role": meta}.
Tags decode_serf_tags(ByteView meta);

class LamportClock {
 public:
  std::uint64_t time() const { return counter_; }
  std::uint64_t increment() { return ++counter_; }
  // Moves past a time seen from another node.
  void witness(std::uint64_t v) {
    if (v >= counter_) counter_ = v + 1;
  }

 private:
  std::uint64_t counter_ = 1;  // serf starts at 1 so 0 can mean "unset"
};

struct SerfJoinIntent {
  std::uint64_t ltime = 0;
  std::string node;
};
struct SerfLeaveIntent {
  std::uint64_t ltime = 0;
  std::string node;
  bool prune = false;
};

Bytes encode_serf_join(const SerfJoinIntent& m);
Bytes encode_serf_leave(const SerfLeaveIntent& m);
SerfJoinIntent decode_serf_join(ByteView body);    // body after the type byte
SerfLeaveIntent decode_serf_leave(ByteView body);  // body after the type byte

struct SerfPushPull {
  std::uint64_t ltime = 0;
  std::map<std::string, std::uint64_t> status_ltimes;
  std::vector<std::string> left_members;
  std::uint64_t event_ltime = 0;
  std::uint64_t query_ltime = 0;
  std::optional<Bytes> weft_state;
};
Bytes encode_serf_push_pull(const SerfPushPull& pp);  // with type byte
SerfPushPull decode_serf_push_pull(ByteView body);    // body after the type byte

class SerfCompat : public Delegate, public EventDelegate {
 public:
  // `app` / `app_events` (optional) receive weft's own messages and state and
  // the membership events; both are borrowed.
  SerfCompat(asio::io_context& io, std::string node_name, Tags tags, Delegate* app = nullptr,
             EventDelegate* app_events = nullptr, int retransmit_mult = 4);
  ~SerfCompat() override;

  // Needed for the retransmit limit and to know whether anyone is listening.
  void attach(Memberlist* memberlist) { memberlist_ = memberlist; }

  // After a successful memberlist join: tell serf nodes when we joined.
  void broadcast_join();

  // serf's Leave(): leave intent, wait for it to be gossiped (or
  // broadcast_timeout), memberlist leave, then wait propagate_delay so we
  // still answer probes while the news spreads. `done(ok)`.
  void leave(milliseconds broadcast_timeout, milliseconds propagate_delay, std::function<void(bool)> done);

  const LamportClock& clock() const { return clock_; }
  // serf-level status of a member as this node believes it.
  bool is_leaving(const std::string& node) const;

  // Delegate
  Bytes node_meta(std::size_t limit) override;
  void notify_msg(ByteView msg) override;
  std::vector<Bytes> get_broadcasts(std::size_t overhead, std::size_t limit) override;
  Bytes local_state(bool join) override;
  void merge_remote_state(ByteView state, bool join) override;

  // EventDelegate
  void notify_join(const Member& m) override;
  void notify_leave(const Member& m) override;
  void notify_update(const Member& m) override;

 private:
  struct Status {
    std::uint64_t ltime = 0;
    bool leaving = false;
    bool gone = false;  // memberlist reported it dead or left
  };
  bool handle_join_intent(const SerfJoinIntent& j);
  bool handle_leave_intent(const SerfLeaveIntent& l);
  std::size_t num_nodes() const;

  asio::io_context& io_;
  std::string name_;
  Tags tags_;
  Delegate* app_;
  EventDelegate* app_events_;
  Memberlist* memberlist_ = nullptr;
  LamportClock clock_;
  BroadcastQueue intents_;
  std::map<std::string, Status> statuses_;
  // Bad messages reach us without their sender's address (a peer without
  // encryption could send any number): one line per kind and interval.
  weft::control::LogLimiter log_limiter_;
  bool leaving_ = false;
  std::shared_ptr<SerfCompat*> self_;  // timers hold it weakly
};

}  // namespace weft::control::gossip
