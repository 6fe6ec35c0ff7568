#include "control/gossip/lzw.h"

#include <array>
#include <unordered_map>

namespace weft::control::gossip {

namespace {

constexpr unsigned kLitWidth = 8;
constexpr unsigned kMaxWidth = 12;
constexpr std::uint32_t kClear = 1u << kLitWidth;  // 256
constexpr std::uint32_t kEof = kClear + 1;         // 257
constexpr std::uint32_t kMaxCode = (1u << kMaxWidth) - 1;
constexpr std::uint32_t kInvalid = 0xffff;

class BitReader {
 public:
  explicit BitReader(ByteView in) : in_(in) {}
  // LSB-first codes of `width` bits; false when the input runs out.
  bool read(unsigned width, std::uint32_t& code) {
    while (nbits_ < width) {
      if (pos_ >= in_.size()) return false;
      bits_ |= static_cast<std::uint32_t>(in_[pos_++]) << nbits_;
      nbits_ += 8;
    }
    code = bits_ & ((1u << width) - 1);
    bits_ >>= width;
    nbits_ -= width;
    return true;
  }

 private:
  ByteView in_;
  std::size_t pos_ = 0;
  std::uint32_t bits_ = 0;
  unsigned nbits_ = 0;
};

class BitWriter {
 public:
  explicit BitWriter(Bytes& out) : out_(out) {}
  void write(std::uint32_t code, unsigned width) {
    bits_ |= code << nbits_;
    nbits_ += width;
    while (nbits_ >= 8) {
      out_.push_back(static_cast<std::uint8_t>(bits_));
      bits_ >>= 8;
      nbits_ -= 8;
    }
  }
  void flush() {
    if (nbits_ > 0) out_.push_back(static_cast<std::uint8_t>(bits_));
    bits_ = 0;
    nbits_ = 0;
  }

 private:
  Bytes& out_;
  std::uint32_t bits_ = 0;
  unsigned nbits_ = 0;
};

}  // namespace

Bytes lzw_decompress(ByteView input, std::size_t max_output) {
  // The dictionary: each code >= kClear expands to expansion(prefix) + suffix.
  std::array<std::uint16_t, 1u << kMaxWidth> prefix{};
  std::array<std::uint8_t, 1u << kMaxWidth> suffix{};
  std::array<std::uint8_t, 1u << kMaxWidth> scratch{};  // one code expands to at most 4096 bytes

  BitReader reader(input);
  Bytes out;
  unsigned width = kLitWidth + 1;
  std::uint32_t hi = kEof;            // last assigned code; the next code defines hi+1... see below
  std::uint32_t overflow = 1u << width;
  std::uint32_t last = kInvalid;

  for (;;) {
    std::uint32_t code = 0;
    if (!reader.read(width, code)) throw DecodeError("lzw: stream ends without an EOF code");

    if (code < kClear) {
      out.push_back(static_cast<std::uint8_t>(code));
      if (last != kInvalid) {
        suffix[hi] = static_cast<std::uint8_t>(code);
        prefix[hi] = static_cast<std::uint16_t>(last);
      }
    } else if (code == kClear) {
      width = kLitWidth + 1;
      hi = kEof;
      overflow = 1u << width;
      last = kInvalid;
      continue;
    } else if (code == kEof) {
      return out;
    } else if (code <= hi) {
      // Expand back-to-front into scratch. code == hi is the KwKwK case: the
      // entry being defined right now, i.e. last's expansion + its first byte.
      std::size_t i = scratch.size() - 1;
      std::uint32_t c = code;
      if (code == hi) {
        if (last == kInvalid) throw DecodeError("lzw: invalid code");
        c = last;
        while (c >= kClear) c = prefix[c];
        scratch[i--] = static_cast<std::uint8_t>(c);
        c = last;
      }
      while (c >= kClear) {
        if (i == 0) throw DecodeError("lzw: invalid code chain");
        scratch[i--] = suffix[c];
        c = prefix[c];
      }
      scratch[i] = static_cast<std::uint8_t>(c);
      out.insert(out.end(), scratch.begin() + static_cast<std::ptrdiff_t>(i), scratch.end());
      if (last != kInvalid) {
        suffix[hi] = static_cast<std::uint8_t>(c);
        prefix[hi] = static_cast<std::uint16_t>(last);
      }
    } else {
      throw DecodeError("lzw: invalid code");
    }
    if (out.size() > max_output) throw DecodeError("lzw: decompressed data exceeds the size limit");

    last = code;
    ++hi;
    if (hi >= overflow) {
      if (width == kMaxWidth) {
        // Table full: stop adding entries until the encoder sends a clear.
        last = kInvalid;
        --hi;
      } else {
        ++width;
        overflow = 1u << width;
      }
    }
  }
}

Bytes lzw_compress(ByteView input) {
  Bytes out;
  BitWriter bw(out);
  unsigned width = kLitWidth + 1;
  std::uint32_t hi = kEof;
  std::uint32_t overflow = 1u << width;
  // (prefix code << 8 | next byte) -> code
  std::unordered_map<std::uint32_t, std::uint32_t> table;

  // Returns false when the dictionary filled up and was reset with a clear code.
  auto inc_hi = [&]() {
    ++hi;
    if (hi == overflow) {
      ++width;
      overflow <<= 1;
    }
    if (hi == kMaxCode) {
      bw.write(kClear, width);
      width = kLitWidth + 1;
      hi = kEof;
      overflow = kClear << 1;
      table.clear();
      return false;
    }
    return true;
  };

  bw.write(kClear, width);
  if (!input.empty()) {
    std::uint32_t saved = input[0];
    for (std::size_t i = 1; i < input.size(); ++i) {
      const std::uint32_t key = (saved << 8) | input[i];
      if (auto it = table.find(key); it != table.end()) {
        saved = it->second;
        continue;
      }
      bw.write(saved, width);
      saved = input[i];
      if (inc_hi()) table.emplace(key, hi);
    }
    bw.write(saved, width);
    inc_hi();
  }
  bw.write(kEof, width);
  bw.flush();
  return out;
}

}  // namespace weft::control::gossip
