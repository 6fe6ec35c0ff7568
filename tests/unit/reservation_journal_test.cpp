// ReservationJournal (control/network/reservation_journal.h): what is read
// back after appends, a generation change, a cut last line and damage.
#include "control/network/reservation_journal.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/addresses.h"
#include "tests/support/scratch_netns.h"

namespace weft::control::network {
namespace {

using testing::ipv4;

ReservationChange change(bool reserved, const std::string& ip, const std::string& owner = "service:abc") {
  return {.reserved = reserved, .reservation = {.network_id = "net1", .ip = ipv4(ip), .owner = reserved ? owner : ""}};
}

class ReservationJournalTest : public ::testing::Test {
 protected:
  std::filesystem::path path() const { return dir.path() / "reservations.journal"; }
  testing::ScratchDir dir;
};

TEST_F(ReservationJournalTest, ReadsBackWhatWasAppendedInItsGeneration) {
  ReservationJournal journal(path());
  EXPECT_TRUE(journal.read(0).empty()) << "no file";
  EXPECT_FALSE(journal.usable()) << "usable only once reset";
  EXPECT_THROW(journal.append(change(true, "10.0.0.2")), std::system_error);
  journal.reset(7);
  journal.append(change(true, "10.0.0.2"));
  journal.append(change(false, "10.0.0.2"));
  journal.append(change(true, "10.0.0.3", "node-lb:n1"));
  EXPECT_EQ(journal.appended(), 3u);
  auto changes = ReservationJournal(path()).read(7);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_TRUE(changes[0].reserved);
  EXPECT_FALSE(changes[1].reserved);
  EXPECT_EQ(changes[2].reservation.ip.str(), "10.0.0.3");
  EXPECT_EQ(changes[2].reservation.owner, "node-lb:n1");
  EXPECT_TRUE(ReservationJournal(path()).read(8).empty()) << "another generation's";
  journal.reset(8);
  EXPECT_TRUE(ReservationJournal(path()).read(8).empty()) << "started over";
  EXPECT_EQ(journal.appended(), 0u);
}

TEST_F(ReservationJournalTest, ACutLastLineAndDamageStopTheReplay) {
  ReservationJournal journal(path());
  journal.reset(1);
  journal.append(change(true, "10.0.0.2"));
  std::ofstream(path(), std::ios::app) << R"({"op":"+","network_id":"net1","ip":"10.0.0.3","ow)";
  EXPECT_EQ(ReservationJournal(path()).read(1).size(), 1u) << "the cut line was never acknowledged";
  std::ofstream(path(), std::ios::app) << "\n" << R"({"op":"+","network_id":"net1","ip":"10.0.0.4","owner":"x"})" << "\n";
  EXPECT_EQ(ReservationJournal(path()).read(1).size(), 1u) << "nothing after damage";
}

}  // namespace
}  // namespace weft::control::network
