#include <gtest/gtest.h>

#include "control/cluster/join_token.h"

namespace weft::control::cluster {
namespace {

TEST(JoinTokenTest, RoundTrip) {
  auto key = generate_gossip_key();
  ASSERT_EQ(key.size(), 32u);
  auto token = encode_join_token({key});
  EXPECT_TRUE(token.starts_with("WEFT-1-"));
  EXPECT_EQ(token.find_first_of("+/="), std::string::npos) << "must paste as one word: " << token;
  EXPECT_EQ(decode_join_token(token).gossip_key, key);
}

TEST(JoinTokenTest, RejectsTamperingAndJunk) {
  auto token = encode_join_token({std::vector<unsigned char>(32, 7)});
  for (std::size_t i = 7; i < token.size(); ++i) {
    auto tampered = token;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    if (tampered[i] == token[i]) continue;
    EXPECT_THROW(decode_join_token(tampered), std::invalid_argument) << "position " << i;
  }
  EXPECT_THROW(decode_join_token(""), std::invalid_argument);
  EXPECT_THROW(decode_join_token("SWMTKN-1-abc"), std::invalid_argument);
  EXPECT_THROW(decode_join_token("WEFT-1-"), std::invalid_argument);
  EXPECT_THROW(decode_join_token(token.substr(0, token.size() - 1)), std::invalid_argument);
  EXPECT_THROW(encode_join_token({std::vector<unsigned char>(20, 1)}), std::invalid_argument);
}

TEST(JoinTokenTest, Base64MatchesKnownVectors) {
  EXPECT_EQ(base64_encode(std::vector<unsigned char>{'f', 'o', 'o', 'b', 'a', 'r'}), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::vector<unsigned char>{'f', 'o'}), "Zm8=");
  EXPECT_EQ(base64_decode("Zm8="), (std::vector<unsigned char>{'f', 'o'}));
  EXPECT_FALSE(base64_decode("Zm8"));
  EXPECT_FALSE(base64_decode("@@@@"));
}

}  // namespace
}  // namespace weft::control::cluster
