// TCP stream messages (push/pull, user, ping/ack, err). Unlike packets they
// carry no length of their own unless encrypted, so the reader parses
// incrementally: feed it everything received so far and it says whether a
// whole message is there yet.
#pragma once

#include <cstddef>
#include <vector>

#include "control/gossip/keyring.h"
#include "control/gossip/messages.h"
#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

// memberlist refuses remote state above 20 MiB.
inline constexpr std::size_t kMaxStreamBytes = 20 * 1024 * 1024;

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
// Throws DecodeError on anything malformed or not decryptable.
StreamParse parse_stream(ByteView received, const Keyring* keyring, bool require_encryption);

// Plain (unencrypted, uncompressed) encodings, type byte first.
Bytes encode_push_pull(const PushPullHeader& header, const std::vector<PushNodeState>& nodes,
                       ByteView user_state);
Bytes encode_user_stream(ByteView user_msg);

// Wraps a plain stream message for the wire: optional compression, then
// encryption with the primary key when a keyring is given.
Bytes frame_stream(ByteView plain, const Keyring* keyring, bool compress);

}  // namespace weft::control::gossip
