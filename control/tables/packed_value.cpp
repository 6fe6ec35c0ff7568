#include "control/tables/packed_value.h"

#include <zlib.h>

#include <cstring>
#include <limits>
#include <stdexcept>

namespace weft::control::tables {

namespace {

// What the records have in common (control/model/record_json.cpp; the
// objects' keys in nlohmann's order): field names and frequent values, the
// most frequent last (closest, so the cheapest to refer to).
constexpr std::string_view kDictionary =
    R"({"first":,"holder":"","last":,"space":""})"
    R"({"endpoint_id":"","error":"","netns":"","node":"","pid":0,"service_id":"","slot":1,"started_at":"","state":"running"})"
    R"({"attachable":false,"created":"","driver":"overlay","gateway":"10.","id":"","name":"","node":"","subnet":"10.0.0.0/24","vni":4096})"
    R"("aliases":["],"backend_state":"draining","drain_until":"2026-,"mode":"dnsrr",/udp"])"
    R"({"command":[],"created":"2026-","id":"","mode":"vip","name":"","networks":[""],"node":"","ports":["80/tcp"],"replicas":0,"restart_condition":"any","version":0,"vips":[{"addr":"10.","network_id":"","prefix_len":24}]})"
    R"({"backend_state":"active","id":"","ifname":"eth0","ip":"10.","mac":"02:42:","name":"","netns":"/run/netns/","network_id":"","node":"","prefix_len":24,"service_id":"","vtep":""})";

// Raw deflate (no header or checksum: the round trip is checked instead).
// A small window and hash: values are a few hundred bytes, and a reset
// clears the hash heads (64 KB at zlib's default memLevel).
constexpr int kWindowBits = 12;
constexpr int kMemLevel = 4;
// Shorter values are held as they are: deflate's gain would not pay for the
// decoding.
constexpr std::size_t kMinPacked = 64;

// The preset dictionary with `context` after it, in a buffer of the
// thread's.
const std::string& dictionary(PackedValue::Context context) {
  thread_local std::string dict;
  dict.assign(kDictionary);
  for (const auto part : context) dict.append(part);
  return dict;
}

bool set_dictionary(z_stream& zs, const std::string& dict, bool deflating) {
  const auto* bytes = reinterpret_cast<const Bytef*>(dict.data());
  const auto n = static_cast<uInt>(dict.size());
  return (deflating ? deflateSetDictionary(&zs, bytes, n) : inflateSetDictionary(&zs, bytes, n)) == Z_OK;
}

// One stream of each kind per thread, reset for each value (an init per
// value would allocate and free the stream's buffers every time).
struct Deflater {
  z_stream zs{};
  bool ok = false;
  Deflater() { ok = deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, -kWindowBits, kMemLevel, Z_DEFAULT_STRATEGY) == Z_OK; }
  ~Deflater() {
    if (ok) deflateEnd(&zs);
  }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
};

struct Inflater {
  z_stream zs{};
  bool ok = false;
  Inflater() { ok = inflateInit2(&zs, -kWindowBits) == Z_OK; }
  ~Inflater() {
    if (ok) inflateEnd(&zs);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
};

// Inflates `n` bytes that must make exactly `size` bytes; nullptr when they
// do not. The result is in a buffer of the thread's, valid until the next
// call: with room to spare, so zlib's fast path runs to the end (it wants
// 258 bytes of room).
const char* inflate_exactly(const char* data, std::size_t n, std::size_t size, const std::string& dict) {
  thread_local Inflater in;
  thread_local std::string out;
  if (!in.ok || inflateReset(&in.zs) != Z_OK || !set_dictionary(in.zs, dict, false)) return nullptr;
  if (out.size() < size + 512) out.resize(size + 512);
  in.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
  in.zs.avail_in = static_cast<uInt>(n);
  in.zs.next_out = reinterpret_cast<Bytef*>(out.data());
  in.zs.avail_out = static_cast<uInt>(out.size());
  const bool whole = inflate(&in.zs, Z_FINISH) == Z_STREAM_END && in.zs.avail_in == 0 && in.zs.total_out == size;
  return whole ? out.data() : nullptr;
}

}  // namespace

PackedValue PackedValue::pack(std::string_view text, Context context, std::string_view header) {
  if (text.size() > std::numeric_limits<std::uint32_t>::max()) throw std::length_error("table value over 4 GiB");
  if (header.size() > kMaxHeader) throw std::length_error("packed value header over 255 bytes");
  PackedValue v;
  v.size_ = static_cast<std::uint32_t>(text.size());
  if (text.size() >= kMinPacked) {
    thread_local Deflater d;
    thread_local std::string out;
    const auto& dict = dictionary(context);
    if (d.ok && deflateReset(&d.zs) == Z_OK && set_dictionary(d.zs, dict, true)) {
      out.resize(deflateBound(&d.zs, static_cast<uLong>(text.size())));
      d.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
      d.zs.avail_in = static_cast<uInt>(text.size());
      d.zs.next_out = reinterpret_cast<Bytef*>(out.data());
      d.zs.avail_out = static_cast<uInt>(out.size());
      const int rc = deflate(&d.zs, Z_FINISH);
      const std::size_t n = out.size() - d.zs.avail_out;
      const std::size_t held = 1 + header.size() + n;
      if (rc == Z_STREAM_END && held < text.size()) {
        const char* back = inflate_exactly(out.data(), n, text.size(), dict);
        if (back && std::string_view(back, text.size()) == text) {
          v.held_ = static_cast<std::uint32_t>(held);
          v.data_ = std::make_unique_for_overwrite<char[]>(held);
          v.data_[0] = static_cast<char>(header.size());
          if (!header.empty()) std::memcpy(v.data_.get() + 1, header.data(), header.size());
          std::memcpy(v.data_.get() + 1 + header.size(), out.data(), n);
          return v;
        }
      }
    }
  }
  v.held_ = v.size_;
  if (v.held_) {
    v.data_ = std::make_unique_for_overwrite<char[]>(v.held_);
    std::memcpy(v.data_.get(), text.data(), text.size());
  }
  return v;
}

PackedValue::PackedValue(const PackedValue& other) : held_(other.held_), size_(other.size_) {
  if (held_) {
    data_ = std::make_unique_for_overwrite<char[]>(held_);
    std::memcpy(data_.get(), other.data_.get(), held_);
  }
}

PackedValue& PackedValue::operator=(const PackedValue& other) {
  if (this != &other) *this = PackedValue(other);
  return *this;
}

std::string_view PackedValue::header() const {
  if (!packed()) return {};
  return {data_.get() + 1, static_cast<unsigned char>(data_[0])};
}

std::string PackedValue::text(Context context) const {
  if (!packed()) return held_ ? std::string(data_.get(), held_) : std::string();
  // It inflated to these bytes when packed; failing now means the memory
  // under it changed.
  const std::size_t skip = 1 + header().size();
  const char* text = inflate_exactly(data_.get() + skip, held_ - skip, size_, dictionary(context));
  if (!text) throw std::logic_error("a packed table value no longer inflates");
  return std::string(text, size_);
}

}  // namespace weft::control::tables
