#include <gtest/gtest.h>

#include "control/gossip/keyring.h"
#include "control/gossip/security.h"

namespace gossip = weft::control::gossip;
using gossip::Bytes;

namespace {
Bytes from_hex(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}
}  // namespace

// McGrew & Viega GCM spec, test case 2: AES-128, zero key/IV, 16 zero bytes.
TEST(GossipSecurity, Version1LayoutMatchesGcmKnownAnswer) {
  const Bytes key(16, 0), nonce(12, 0), plain(16, 0);
  const Bytes sealed = gossip::encrypt_payload_with_nonce(key, nonce, plain, {});
  Bytes want{1};
  want.insert(want.end(), nonce.begin(), nonce.end());
  const Bytes ct = from_hex("0388dace60b6a392f328c2b971b2fe78");
  const Bytes tag = from_hex("ab6e47d42cec13bdf53a67b21257bddf");
  want.insert(want.end(), ct.begin(), ct.end());
  want.insert(want.end(), tag.begin(), tag.end());
  EXPECT_EQ(sealed, want);
  EXPECT_EQ(sealed.size(), plain.size() + gossip::kEncryptOverhead);
}

TEST(GossipSecurity, RoundTripForEveryKeySize) {
  for (std::size_t size : {16u, 24u, 32u}) {
    gossip::Keyring ring(Bytes(size, 0x42));
    const Bytes plain{'a', 'b', 'c'};
    const Bytes aad{10, 0, 0, 0, 32};
    auto sealed = gossip::encrypt_payload(ring.primary(), plain, aad);
    EXPECT_EQ(sealed[0], 1);
    auto opened = gossip::decrypt_payload(ring, sealed, aad);
    ASSERT_TRUE(opened.has_value()) << size;
    EXPECT_EQ(*opened, plain);
    EXPECT_FALSE(gossip::decrypt_payload(ring, sealed, Bytes{}).has_value()) << "additional data must match";
  }
}

TEST(GossipSecurity, NoncesAreFresh) {
  const Bytes key(32, 1), plain{1, 2, 3};
  EXPECT_NE(gossip::encrypt_payload(key, plain, {}), gossip::encrypt_payload(key, plain, {}));
}

TEST(GossipSecurity, TamperingAndWrongKeysAreRejected) {
  gossip::Keyring ring(Bytes(32, 9));
  const Bytes plain(100, 0x33);
  const Bytes sealed = gossip::encrypt_payload(ring.primary(), plain, {});
  for (std::size_t i = 1; i < sealed.size(); i += 7) {
    Bytes bad = sealed;
    bad[i] ^= 0x01;
    EXPECT_FALSE(gossip::decrypt_payload(ring, bad, {}).has_value()) << "flip at " << i;
  }
  Bytes bad_version = sealed;
  bad_version[0] = 2;
  EXPECT_FALSE(gossip::decrypt_payload(ring, bad_version, {}).has_value());
  EXPECT_FALSE(gossip::decrypt_payload(ring, Bytes(sealed.begin(), sealed.begin() + 20), {}).has_value());
  EXPECT_FALSE(gossip::decrypt_payload(ring, Bytes{}, {}).has_value());
  gossip::Keyring other(Bytes(32, 8));
  EXPECT_FALSE(gossip::decrypt_payload(other, sealed, {}).has_value());
}

TEST(GossipSecurity, DecryptsVersion0WithPkcs7Padding) {
  gossip::Keyring ring(Bytes(16, 5));
  const Bytes plain{1, 2, 3, 4, 5};
  // PKCS7: 11 bytes of value 11 after the 5 real ones. Spelt out: g++ 12 at
  // -O2 misreads filling a sized vector as an overflow.
  const Bytes padded{1, 2, 3, 4, 5, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11};
  Bytes sealed = gossip::encrypt_payload_with_nonce(ring.primary(), Bytes(12, 3), padded, {});
  sealed[0] = 0;  // the version byte is outside the authenticated data
  auto opened = gossip::decrypt_payload(ring, sealed, {});
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(*opened, plain);
}

TEST(GossipKeyring, PrimaryEncryptsAllKeysDecrypt) {
  const Bytes k1(32, 1), k2(16, 2), k3(24, 3);
  gossip::Keyring ring(k1, {k2, k3});
  ASSERT_EQ(ring.keys().size(), 3u);
  EXPECT_EQ(ring.primary(), k1);

  gossip::Keyring old_node(k3);
  const Bytes from_old = gossip::encrypt_payload(old_node.primary(), Bytes{7}, {});
  EXPECT_TRUE(gossip::decrypt_payload(ring, from_old, {}).has_value());

  ring.use_key(k2);
  EXPECT_EQ(ring.primary(), k2);
  EXPECT_EQ(ring.keys().size(), 3u);
  EXPECT_THROW(ring.remove_key(k2), std::invalid_argument);
  ring.remove_key(k3);
  EXPECT_FALSE(gossip::decrypt_payload(ring, from_old, {}).has_value());
  ring.add_key(k1);  // already there
  EXPECT_EQ(ring.keys().size(), 2u);
  EXPECT_THROW(ring.use_key(Bytes(16, 99)), std::invalid_argument);
}

TEST(GossipKeyring, ValidatesKeys) {
  EXPECT_THROW(gossip::Keyring(Bytes(15, 0)), std::invalid_argument);
  EXPECT_THROW(gossip::Keyring(Bytes(33, 0)), std::invalid_argument);
  // What `serf keygen` prints: base64 of 32 random bytes.
  const Bytes key = gossip::Keyring::decode_base64_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
  ASSERT_EQ(key.size(), 32u);
  for (std::size_t i = 0; i < key.size(); ++i) EXPECT_EQ(key[i], i);
  EXPECT_EQ(gossip::Keyring::decode_base64_key("AAECAwQFBgcICQoLDA0ODw==").size(), 16u);
  EXPECT_THROW(gossip::Keyring::decode_base64_key("not base64!"), std::invalid_argument);
  EXPECT_THROW(gossip::Keyring::decode_base64_key("AAAA"), std::invalid_argument);  // 3 bytes
}
