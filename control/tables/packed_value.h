// A table entry's value (JSON text) as the replicated tables hold it in
// memory: raw deflate (zlib) with a preset dictionary of the records' field
// names, decoded on demand. An endpoint record of ~450 bytes, three 64-hex
// ids among them, is held in ~200 alone, in ~60 with the context the
// replicated tables give it (another record of its node, its ids).
//
// Exact by construction: the compact form is kept only when it inflates
// back to the very same bytes and is smaller; anything else (short values,
// text that does not compress) is held as it is. Digests, anti-entropy,
// the journal and the wire all see the text, so it must not change by a
// byte. The dictionary is part of the in-memory form only (never written or
// sent), so it may change between builds.
//
// `context`: text the value likely repeats (a table entry's owner and key:
// an endpoint record names its node and its id, 64 hex digits), appended to
// the dictionary. text() must be given the same context, or it returns
// other bytes of the same length.
//
// `header`: a few bytes of the caller's kept with the packed form (and
// dropped with it when the text is held as it is): what the caller needs to
// rebuild the context (the replicated tables keep there which ids of theirs
// a value's dictionary names).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace weft::control::tables {

class PackedValue {
 public:
  PackedValue() = default;
  using Context = std::initializer_list<std::string_view>;
  static constexpr std::size_t kMaxHeader = 255;
  static PackedValue pack(std::string_view text, Context context = {}, std::string_view header = {});

  PackedValue(const PackedValue& other);
  PackedValue& operator=(const PackedValue& other);
  PackedValue(PackedValue&&) noexcept = default;
  PackedValue& operator=(PackedValue&&) noexcept = default;

  // The text as it was packed (with the same context).
  std::string text(Context context = {}) const;
  // Its length in bytes (without decoding).
  std::size_t size() const { return size_; }
  // True when held deflated.
  bool packed() const { return held_ != size_; }
  // The header given to pack() when held deflated, else empty.
  std::string_view header() const;
  // Bytes held on the heap for it (the allocation's request).
  std::size_t held_bytes() const { return held_; }

 private:
  // Packed: the header's length (a byte), the header, the deflated text.
  std::unique_ptr<char[]> data_;
  std::uint32_t held_ = 0;  // bytes in data_
  std::uint32_t size_ = 0;  // of the text; equal to held_: held as it is
};

}  // namespace weft::control::tables
