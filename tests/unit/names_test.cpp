#include "control/model/names.h"

#include <chrono>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/model/model.h"

namespace weft::control::names {
namespace {

std::string repeat(char c, std::size_t n) { return std::string(n, c); }

// `labels` labels of `length` characters joined by dots.
std::string dns_name(std::size_t labels, std::size_t length) {
  std::string name;
  for (std::size_t i = 0; i < labels; ++i) {
    if (i > 0) name += '.';
    name += repeat('a', length);
  }
  return name;
}

TEST(NetworkNameTest, AcceptsDockerNamesUpToTheLimit) {
  for (const std::string& name : std::vector<std::string>{"a", "net-test", "My_Net.2", "0", "a-", "a.", repeat('x', kMaxNetworkName)}) {
    EXPECT_EQ(network_name_error(name), std::nullopt) << name;
    EXPECT_NO_THROW(validate_network_name(name));
  }
}

TEST(NetworkNameTest, RefusesOtherCharactersWithTheRule) {
  for (const std::string& name : std::vector<std::string>{"-a", "_a", ".a", "a b", "a/b", "a\nb", "caf\xc3\xa9", "\xe2\x80\x8b", "a\x7f"}) {
    const auto error = network_name_error(name);
    ASSERT_TRUE(error.has_value()) << name;
    EXPECT_NE(error->find("only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"), std::string::npos) << *error;
  }
  EXPECT_EQ(network_name_error(""), "network name is required");
}

TEST(NetworkNameTest, OneOverTheLimitIsRefusedNamingTheLimit) {
  EXPECT_EQ(network_name_error(repeat('x', kMaxNetworkName + 1)),
            "network name is 129 characters long; the limit is 128");
}

TEST(NetworkNameTest, ValidateThrowsBadRequest) {
  try {
    validate_network_name("no spaces");
    FAIL() << "expected ApiError";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.kind(), ApiError::Kind::BadRequest);
    EXPECT_EQ(std::string(e.what()), "invalid network name \"no spaces\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
  }
}

// The name that crashed the agent through std::regex's recursion, and far
// longer ones: refused at once, with a short message.
TEST(NetworkNameTest, HugeNamesCostLittle) {
  for (std::size_t size : {20000u, 30000u, 1u << 20, 16u << 20}) {
    const std::string name = repeat('b', size);
    const auto started = std::chrono::steady_clock::now();
    const auto error = network_name_error(name);
    const auto took = std::chrono::steady_clock::now() - started;
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(*error, "network name is " + std::to_string(size) + " characters long; the limit is 128");
    EXPECT_LT(took, std::chrono::milliseconds(50));
    // The same length of valid characters passes every other check linearly.
    EXPECT_TRUE(dns_name_error("endpoint name", name).has_value());
    EXPECT_LT(netns_error(name)->size(), 200u);
    EXPECT_LT(network_ref_error(name)->size(), 200u);
  }
}

TEST(NetworkRefTest, BoundsReferencesButAcceptsAnythingPrintable) {
  EXPECT_EQ(network_ref_error("my net"), std::nullopt);  // "not found" is the service's to say
  EXPECT_EQ(network_ref_error(repeat('f', 64)), std::nullopt);
  EXPECT_EQ(network_ref_error(repeat('f', kMaxNetworkRef)), std::nullopt);
  EXPECT_EQ(network_ref_error(repeat('f', kMaxNetworkRef + 1)),
            "network name or id is 129 bytes long; the limit is 128");
  EXPECT_EQ(network_ref_error(""), "network name or id is required");
  EXPECT_EQ(network_ref_error("a\nb"), "invalid network name or id \"a\\nb\": control characters are not allowed");
}

TEST(ServiceNameTest, DockerNamesOfOneDnsLabel) {
  EXPECT_EQ(service_name_error("web_1.v2"), std::nullopt);
  EXPECT_EQ(service_name_error(repeat('s', 63)), std::nullopt);
  EXPECT_EQ(service_name_error(repeat('s', 64)), "service name is 64 characters long; the limit is 63");
  EXPECT_TRUE(service_name_error("-web").has_value());
  EXPECT_THROW(validate_service_name("a b"), ApiError);
}

TEST(DnsNameTest, LabelBoundaries) {
  EXPECT_EQ(dns_name_error("endpoint name", repeat('a', 63)), std::nullopt);
  const auto error = dns_name_error("endpoint name", repeat('a', 64));
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("DNS label of 64 characters; the limit is 63"), std::string::npos) << *error;
  EXPECT_TRUE(dns_name_error("alias", "ok." + repeat('a', 64) + ".ok").has_value());
}

TEST(DnsNameTest, TotalBoundaries) {
  // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253
  const std::string longest = dns_name(3, 63) + "." + repeat('a', 61);
  ASSERT_EQ(longest.size(), 253u);
  EXPECT_EQ(dns_name_error("alias", longest), std::nullopt);
  EXPECT_EQ(dns_name_error("alias", longest + "a"), "alias is 254 characters long; the limit is 253");
}

TEST(DnsNameTest, LabelsAndCharacters) {
  for (const std::string& name : std::vector<std::string>{"api", "web-1", "my_app_1", "a.b.c", "1", "x--y", "A9"}) {
    EXPECT_EQ(dns_name_error("endpoint name", name), std::nullopt) << name;
  }
  for (const std::string& name : std::vector<std::string>{"-a", "a-", "a.-b", ".a", "a.", "a..b", "a b", "a/b", "a:b", "a\nb", "a\tb",
                                 "caf\xc3\xa9", "a\x1b[31m", "a\xc2\x9b" "b", std::string("a\0b", 3)}) {
    EXPECT_TRUE(dns_name_error("endpoint name", name).has_value()) << name;
  }
  EXPECT_EQ(dns_name_error("endpoint name", ""), "endpoint name is required");
  EXPECT_EQ(endpoint_name_error("a\nb"),
            "invalid endpoint name \"a\\nb\": only letters, digits, '-' and '_' are allowed in a DNS label, "
            "and '.' between labels");
  EXPECT_THROW(validate_endpoint_name("bad name"), ApiError);
}

TEST(AliasesTest, AtMostSixteenDnsNames) {
  std::vector<std::string> aliases;
  EXPECT_EQ(aliases_error(aliases), std::nullopt);
  for (int i = 0; i < 16; ++i) aliases.push_back(std::string("a").append(std::to_string(i)));
  EXPECT_EQ(aliases_error(aliases), std::nullopt);
  aliases.push_back("one-more");
  EXPECT_EQ(aliases_error(aliases), "an endpoint has at most 16 aliases, not 17");
  EXPECT_THROW(validate_aliases(aliases), ApiError);
  EXPECT_THAT(aliases_error({"ok", "not ok"}).value_or(""), ::testing::HasSubstr("invalid alias \"not ok\""));
  EXPECT_EQ(aliases_error({""}), "alias is required");
}

TEST(NetnsNameTest, NamesAndAbsolutePaths) {
  for (const std::string& netns : std::vector<std::string>{"c1", "ns-1_x.y", "/proc/42/ns/net", "/run/netns/c1", "caf\xc3\xa9",
                                  repeat('n', kMaxNetnsName), "/" + repeat('p', kMaxNetnsPath - 1)}) {
    EXPECT_EQ(netns_error(netns), std::nullopt) << netns;
  }
  EXPECT_EQ(netns_error(repeat('n', kMaxNetnsName + 1)), "network namespace name is 256 bytes long; the limit is 255");
  EXPECT_EQ(netns_error("/" + repeat('p', kMaxNetnsPath)),
            "network namespace path is 4096 bytes long; the limit is 4095");
  EXPECT_NE(netns_error("a/b")->find("not a relative path"), std::string::npos);
  EXPECT_TRUE(netns_error(".").has_value());
  EXPECT_TRUE(netns_error("..").has_value());
  EXPECT_EQ(netns_error("c1\nc2"), "invalid network namespace name \"c1\\nc2\": control characters are not allowed");
  EXPECT_TRUE(netns_error("/proc/1/ns/net\r").has_value());
  EXPECT_TRUE(netns_error("").has_value());
}

TEST(LabelTest, BoundedKeysAndValues) {
  EXPECT_EQ(label_error("com.example.team", "net ops"), std::nullopt);
  EXPECT_EQ(label_error("k", ""), std::nullopt);
  EXPECT_EQ(label_error(repeat('k', kMaxLabelKey), repeat('v', kMaxLabelValue)), std::nullopt);
  EXPECT_TRUE(label_error(repeat('k', kMaxLabelKey + 1), "v").has_value());
  EXPECT_TRUE(label_error("k", repeat('v', kMaxLabelValue + 1)).has_value());
  EXPECT_TRUE(label_error("", "v").has_value());
  EXPECT_TRUE(label_error("a=b", "v").has_value());
  EXPECT_TRUE(label_error("k", "line\nbreak").has_value());
  EXPECT_THROW(validate_label("k\x1b", "v"), ApiError);
}

TEST(TextTest, LengthAndControlCharacters) {
  EXPECT_EQ(text_error("subnet", "10.0.0.0/24", kMaxShortText), std::nullopt);
  EXPECT_EQ(text_error("subnet", "", kMaxShortText), std::nullopt);
  EXPECT_EQ(text_error("driver", repeat('d', 65), kMaxShortText), "driver is 65 bytes long; the limit is 64");
  EXPECT_TRUE(text_error("driver", "over\x7flay", kMaxShortText).has_value());
}

TEST(ControlCharacterTest, C0DelAndC1ButNotOtherUnicode) {
  EXPECT_FALSE(has_control_character("plain ascii ~!@#"));
  EXPECT_FALSE(has_control_character("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\xb3"));
  EXPECT_FALSE(has_control_character("\xc2\xa0"));  // NBSP is printable
  EXPECT_TRUE(has_control_character(std::string("\0", 1)));
  EXPECT_TRUE(has_control_character("\x1f"));
  EXPECT_TRUE(has_control_character("\x7f"));
  EXPECT_TRUE(has_control_character("\xc2\x80"));
  EXPECT_TRUE(has_control_character("x\xc2\x9b" "31m"));
}

TEST(PrintableTest, EscapesControlCharactersOnly) {
  EXPECT_EQ(printable("web\nevil 1.2.3.4"), "web\\nevil 1.2.3.4");
  EXPECT_EQ(printable("\t\r\x1b[2J\x7f"), "\\t\\r\\x1b[2J\\x7f");
  EXPECT_EQ(printable("a\xc2\x9b" "b"), "a\\u009bb");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");
}

TEST(QuotedPreviewTest, ShortPreviewOfLongValues) {
  EXPECT_EQ(quoted_preview("web"), "\"web\"");
  EXPECT_EQ(quoted_preview(repeat('b', 30000)), "\"" + repeat('b', 40) + "...\" (30000 bytes)");
  // Cut on a character boundary: 39 ASCII bytes, then a 2-byte character.
  const std::string text = repeat('a', 39) + "\xc3\xa9" + repeat('z', 10);
  EXPECT_EQ(quoted_preview(text), "\"" + repeat('a', 39) + "...\" (51 bytes)");
}

}  // namespace
}  // namespace weft::control::names
