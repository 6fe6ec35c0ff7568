// TCP stream messages (push/pull, user, ping/ack, err). Unlike packets they
// carry no length of their own unless encrypted, so the reader parses
// incrementally: feed it everything received so far and it says whether a
// whole message is there yet.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "control/gossip/keyring.h"
#include "control/gossip/messages.h"
#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

// Default limit on one stream message, after decryption and decompression
// too: more than three times a real push/pull of 10 000 endpoint entries
// with 100 members (4.4 MB uncompressed, 1.9 MB compressed on the wire; see
// GossipStreamLimits.PushPullOf10000EntriesFitsTheDefault). Below
// memberlist's 20 MiB cap on push/pull user state, so the 20 MiB frames of
// a hostile peer are refused from their 5-byte header.
inline constexpr std::size_t kDefaultMaxStreamBytes = 16 * 1024 * 1024;

struct StreamMessage {
  MessageType type = MessageType::kErr;
  bool was_encrypted = false;
  // kPushPull
  PushPullHeader push_pull;
  std::vector<PushNodeState> nodes;
  Bytes user_state;
  // kPing / kAck / kErr / kUser
  Ping ping;
  AckResp ack;
  ErrResp err;
  Bytes user_msg;
};

struct StreamParse {
  bool complete = false;  // false: wait for more bytes
  StreamMessage message;
  std::size_t consumed = 0;
};

// `keyring` may be null (encryption off). With a keyring and
// `require_encryption`, a plaintext stream is an error, which keeps an
// unauthenticated peer from pushing state into the cluster.
// Throws DecodeError on anything malformed or not decryptable, and on a
// message larger than `max_bytes` (its encrypted frame, its plaintext and
// its decompressed form each), as soon as the bytes received show it: an
// encrypted frame's length is checked from its 5-byte header.
StreamParse parse_stream(ByteView received, const Keyring* keyring, bool require_encryption,
                         std::size_t max_bytes = kDefaultMaxStreamBytes);

// The size of the whole message once its header is in: the encrypted
// frame's, or nullopt while unknown (plaintext messages carry no length).
std::optional<std::size_t> stream_frame_size(ByteView received);

// Bytes that all buffers of a kind of stream (inbound, unauthenticated) may
// hold together. Not thread-safe: used from the gossip io thread.
class StreamBufferBudget {
 public:
  explicit StreamBufferBudget(std::size_t limit) : limit_(limit) {}
  bool take(std::size_t n) {
    if (n > limit_ - in_use_) return false;
    in_use_ += n;
    peak_since_idle_ = std::max(peak_since_idle_, in_use_);
    return true;
  }
  void give(std::size_t n);
  std::size_t in_use() const { return in_use_; }
  std::size_t limit() const { return limit_; }
  // Called when everything was given back after at least `threshold` bytes
  // were held: the moment to return freed memory to the system.
  void on_idle(std::size_t threshold, std::function<void()> callback) {
    idle_threshold_ = threshold;
    on_idle_ = std::move(callback);
  }

 private:
  std::size_t limit_;
  std::size_t in_use_ = 0;
  std::size_t peak_since_idle_ = 0;
  std::size_t idle_threshold_ = 0;
  std::function<void()> on_idle_;
};

// Collects one stream message from what a socket delivers, in any chunks.
// The buffer grows only as bytes arrive, never past the message's frame
// (once its header told the size) or `max_bytes`, and each growth is taken
// from `budget` when one is given. A first byte that is no stream message
// type, or an encrypted length over the limit, is refused right away.
class StreamReader {
 public:
  StreamReader(const Keyring* keyring, bool require_encryption, std::size_t max_bytes,
               StreamBufferBudget* budget = nullptr);
  ~StreamReader() { release(); }
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  // The message once complete (the buffer is released then), nullopt while
  // more bytes are needed. Throws DecodeError on a refusal.
  std::optional<StreamMessage> feed(ByteView bytes);
  // Frees the buffer and gives its bytes back to the budget.
  void release();
  std::size_t buffered() const { return buffer_.size(); }
  std::size_t capacity() const { return buffer_.capacity(); }

 private:
  void grow_for(std::size_t needed);

  const Keyring* keyring_;
  bool require_encryption_;
  std::size_t max_bytes_;
  StreamBufferBudget* budget_;
  Bytes buffer_;
  std::size_t taken_ = 0;  // from budget_
};

// Plain (unencrypted, uncompressed) encodings, type byte first.
Bytes encode_push_pull(const PushPullHeader& header, const std::vector<PushNodeState>& nodes,
                       ByteView user_state);
Bytes encode_user_stream(ByteView user_msg);

// Wraps a plain stream message for the wire: optional compression, then
// encryption with the primary key when a keyring is given.
Bytes frame_stream(ByteView plain, const Keyring* keyring, bool compress);

}  // namespace weft::control::gossip
