// LZW as Go's compress/lzw does it with Order=LSB and litWidth=8, which is
// what memberlist uses for its `compress` message (EnableCompression is on by
// default, so serf peers send compressed packets and push/pull streams).
#pragma once

#include <cstddef>

#include "control/gossip/msgpack_wire.h"

namespace weft::control::gossip {

// Throws DecodeError on an invalid code, a truncated stream (no EOF code) or
// output larger than `max_output` (a small packet must not expand into an
// unbounded allocation).
Bytes lzw_decompress(ByteView input, std::size_t max_output = 20 * 1024 * 1024);

// Produces a stream Go's lzw.NewReader(r, lzw.LSB, 8) decodes, code-for-code
// what Go 1.17+'s writer emits (leading clear code, EOF code, LSB packing).
Bytes lzw_compress(ByteView input);

}  // namespace weft::control::gossip
