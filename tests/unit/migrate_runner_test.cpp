// Pure logic of the migration runner: file ordering, checksums, and comparing what is applied.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "migrate/runner.hpp"

namespace outbox::migrate {
namespace {

TEST(MigrationChecksum, IsTheLowercaseHexSha256OfTheSql) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(MigrationParse, SortsByVersionAndKeepsOnlyTheTarget) {
  std::vector<EmbeddedFile> files = {
      {"primary", "0010_ten.sql", "SELECT 10;"},
      {"replica", "0001_read.sql", "SELECT 'r';"},
      {"primary", "0002_two.sql", "SELECT 2;"},
      {"primary", "0001_one.sql", "SELECT 1;"},
  };
  auto primary = parse(files, Target::primary);
  ASSERT_EQ(primary.size(), 3u);
  EXPECT_EQ(primary[0].version, 1);
  EXPECT_EQ(primary[0].name, "one");
  EXPECT_EQ(primary[0].file, "0001_one.sql");
  EXPECT_EQ(primary[0].checksum, sha256_hex("SELECT 1;"));
  EXPECT_EQ(primary[1].version, 2);
  EXPECT_EQ(primary[2].version, 10);
  auto replica = parse(files, Target::replica);
  ASSERT_EQ(replica.size(), 1u);
  EXPECT_EQ(replica[0].name, "read");
}

TEST(MigrationParse, RejectsBadNamesAndDuplicateVersions) {
  for (std::string_view bad : {"one.sql", "0001.sql", "0001_x.txt", "x001_y.sql", "0000_zero.sql", "_x.sql"}) {
    std::vector<EmbeddedFile> files = {{"primary", bad, ""}};
    EXPECT_THROW(parse(files, Target::primary), Error) << bad;
  }
  std::vector<EmbeddedFile> duplicate = {{"primary", "0001_a.sql", ""}, {"primary", "1_b.sql", ""}};
  EXPECT_THROW(parse(duplicate, Target::primary), Error);
}

TEST(MigrationParse, TheEmbeddedFilesAreNumberedFromTheirSetsFirstVersionWithoutGaps) {
  for (Target target : {Target::primary, Target::replica, Target::service}) {
    const auto& all = migrations(target);
    ASSERT_FALSE(all.empty()) << target_name(target);
    int first = version_range(target).first;
    for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].version, first + static_cast<int>(i)) << all[i].file;
    EXPECT_EQ(latest_version(target), first + static_cast<int>(all.size()) - 1);
  }
}

TEST(MigrationParse, RejectsAVersionOutsideItsSetsRange) {
  std::vector<EmbeddedFile> service_below = {{"service", "0003_low.sql", ""}};
  EXPECT_THROW(parse(service_below, Target::service), Error);
  std::vector<EmbeddedFile> primary_above = {{"primary", "1001_high.sql", ""}};
  EXPECT_THROW(parse(primary_above, Target::primary), Error);
  std::vector<EmbeddedFile> service = {{"service", "1001_ok.sql", ""}};
  EXPECT_EQ(parse(service, Target::service).front().version, 1001);
}

std::vector<Migration> known() {
  return {{1, "one", "0001_one.sql", "A", sha256_hex("A")}, {2, "two", "0002_two.sql", "B", sha256_hex("B")}};
}

TEST(MigrationCompare, AnEmptyDatabaseHasEverythingPending) {
  Status status = compare({}, known(), false);
  EXPECT_EQ(status.current, 0);
  EXPECT_EQ(status.latest, 2);
  EXPECT_EQ(status.pending(), 2);
  EXPECT_FALSE(status.mismatch());
  EXPECT_FALSE(status.has_table);
  EXPECT_EQ(checksum_problem(status, "primary"), std::nullopt);
}

TEST(MigrationCompare, MarksAppliedPendingMismatchedAndUnknownVersions) {
  std::vector<Applied> applied = {{1, "one", sha256_hex("A"), "t1"}, {3, "three", "c", "t3"}};
  Status status = compare(applied, known());
  ASSERT_EQ(status.entries.size(), 3u);
  EXPECT_EQ(status.entries[0].state, State::applied);
  EXPECT_EQ(status.entries[0].applied_at, "t1");
  EXPECT_EQ(status.entries[1].state, State::pending);
  EXPECT_EQ(status.entries[1].file(), "0002_two.sql");
  EXPECT_EQ(status.entries[2].state, State::unknown);
  EXPECT_EQ(status.current, 3);
  EXPECT_EQ(status.pending(), 1);

  Status changed = compare({{1, "one", "0123456789abcdef", "t1"}}, known());
  EXPECT_TRUE(changed.mismatch());
  auto problem = checksum_problem(changed, "replica main");
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(*problem, "replica main: migration 0001_one.sql was applied with checksum 0123456789ab but this outbox has " +
                          sha256_hex("A").substr(0, 12) +
                          "; an applied migration must never change (restore the file, or repair schema_migrations by hand)");
}

TEST(MigrationCompare, ADatabaseHoldingThePrimaryAndTheServiceSetsSeesOnlyTheSetItLooksAt) {
  std::vector<Applied> applied = {{1, "one", sha256_hex("A"), "t1"}, {2, "two", sha256_hex("B"), "t2"}, {1001, "svc", "s", "t3"}};
  Status primary = compare(of_set(applied, Target::primary), known());
  EXPECT_EQ(primary.current, 2);
  EXPECT_EQ(primary.entries.size(), 2u);
  EXPECT_EQ(history_problem(primary, "primary"), std::nullopt);
  std::vector<Migration> service_known = {{1001, "svc", "1001_svc.sql", "s", "s"}};
  Status service = compare(of_set(applied, Target::service), service_known);
  EXPECT_EQ(service.current, 1001);
  EXPECT_EQ(service.pending(), 0);
  EXPECT_EQ(history_problem(service, "service booking"), std::nullopt);
}

}  // namespace
}  // namespace outbox::migrate
