// Msgpack as hashicorp/go-msgpack's default `codec.MsgpackHandle{}` writes it.
//
// memberlist and serf encode with WriteExt=false, i.e. the *old* msgpack spec:
// strings and []byte are both "raw" (fixraw 0xa0-0xbf, raw16 0xda, raw32 0xdb;
// never str8 0xd9 nor bin 0xc4-0xc6, which old Go decoders reject), nil slices
// are nil (0xc0), integers use the smallest encoding, and struct fields are
// written as a map whose keys are sorted by Go field name. The reader side is
// lenient (accepts str, bin and nil for byte fields) like Go's decoder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

namespace weft::control::gossip {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// Malformed or unexpected input from the network.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The buffer ends in the middle of a msgpack value; a stream reader should
// wait for more bytes. Packet decoders treat it as a DecodeError.
class NeedMoreData : public DecodeError {
 public:
  NeedMoreData() : DecodeError("truncated msgpack value") {}
};

inline ByteView as_view(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string to_string(ByteView b) { return {b.begin(), b.end()}; }

class GoMsgpackWriter {
 public:
  explicit GoMsgpackWriter(Bytes& out) : sink_{out}, packer_(sink_) {}

  void map_header(std::size_t n);
  void array_header(std::size_t n);
  void raw(std::string_view s);
  void raw(ByteView b);
  // Go writes a nil []byte as msgpack nil; we treat "empty" as nil so that
  // encodings match Go byte-for-byte for the nil slices memberlist sends.
  void bytes_or_nil(ByteView b);
  void uint(std::uint64_t v);
  void integer(std::int64_t v);
  void boolean(bool v);
  void nil();

  // Convenience for struct fields: key then value.
  void field(std::string_view key) { raw(key); }

 private:
  struct Sink {
    Bytes& out;
    void write(const char* p, std::size_t n) { out.insert(out.end(), p, p + n); }
  };
  Sink sink_;
  msgpack::packer<Sink> packer_;
};

// One decoded msgpack value plus the memory it lives in.
class MsgpackValue {
 public:
  // Decodes one value starting at `offset`, advancing it. Throws NeedMoreData
  // if the value is incomplete and DecodeError if it is malformed or exceeds
  // the size limits (which keep a hostile peer from making us allocate a lot).
  static MsgpackValue decode(ByteView data, std::size_t& offset);
  // Decodes exactly one value that must fill the whole buffer... or at least
  // start it: trailing bytes are ignored like Go's decoder does.
  static MsgpackValue decode(ByteView data) {
    std::size_t off = 0;
    return decode(data, off);
  }

  const msgpack::object& get() const { return handle_.get(); }

 private:
  msgpack::object_handle handle_;
};

// Read-only view of a msgpack map with string keys (a Go struct).
class StructView {
 public:
  explicit StructView(const msgpack::object& obj);  // throws DecodeError if not a map

  // nullptr if absent (Go leaves the field at its zero value).
  const msgpack::object* find(std::string_view key) const;

  std::uint64_t uint(std::string_view key, std::uint64_t max = UINT64_MAX) const;
  std::int64_t integer(std::string_view key) const;
  bool boolean(std::string_view key) const;
  std::string string(std::string_view key) const;
  Bytes bytes(std::string_view key) const;

 private:
  const msgpack::object& obj_;
};

// Scalar conversions with Go-like leniency and range checks.
std::uint64_t object_to_uint(const msgpack::object& o, std::uint64_t max, std::string_view what);
std::int64_t object_to_int(const msgpack::object& o, std::string_view what);
std::string object_to_string(const msgpack::object& o, std::string_view what);
Bytes object_to_bytes(const msgpack::object& o, std::string_view what);
bool object_to_bool(const msgpack::object& o, std::string_view what);

}  // namespace weft::control::gossip
