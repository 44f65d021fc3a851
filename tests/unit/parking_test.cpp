// Pure logic of the parking-slot commands: validation and output formats.
#include "examples/parking/parking.hpp"

#include <gtest/gtest.h>

#include <set>

#include "core/error.hpp"
#include "core/utf8.hpp"

namespace outbox::parking {
namespace {

ExitCode code_of(void (*check)(std::string_view), std::string_view value) {
  try {
    check(value);
  } catch (const Error& error) {
    return error.code();
  }
  return ExitCode::ok;
}

std::string message_of(void (*check)(std::string_view), std::string_view value) {
  try {
    check(value);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(ParkingName, AcceptsOneTo200CharactersCountingCodePointsNotBytes) {
  EXPECT_EQ(code_of(validate_name, "A"), ExitCode::ok);
  EXPECT_EQ(code_of(validate_name, std::string(200, 'x')), ExitCode::ok);
  std::string two_byte;
  for (int i = 0; i < 200; ++i) two_byte += "\xc3\xa9";
  EXPECT_EQ(code_of(validate_name, two_byte), ExitCode::ok);
  std::string four_byte;
  for (int i = 0; i < 200; ++i) four_byte += "\xf0\x9f\x9a\x97";
  EXPECT_EQ(code_of(validate_name, four_byte), ExitCode::ok);
  EXPECT_EQ(code_of(validate_name, four_byte + "x"), ExitCode::data);
}

TEST(ParkingName, RejectsEmptyAndTooLongNamesWithADataError) {
  EXPECT_EQ(message_of(validate_name, ""), "invalid name: must not be empty");
  EXPECT_EQ(message_of(validate_name, std::string(201, 'x')), "invalid name: 201 characters, at most 200 allowed");
  EXPECT_EQ(code_of(validate_name, std::string(201, 'x')), ExitCode::data);
}

TEST(ParkingName, RejectsInvalidUtf8) {
  for (std::string bad : {"\xff", "a\x80", "\xc3", "\xc0\xaf" /* overlong '/' */, "\xe0\x80\xaf", "\xed\xa0\x80" /* surrogate */,
                          "\xf4\x90\x80\x80" /* past U+10FFFF */, "\xf8\x88\x80\x80\x80"}) {
    EXPECT_EQ(code_of(validate_name, bad), ExitCode::data) << bad;
    EXPECT_NE(message_of(validate_name, bad).find("not valid UTF-8"), std::string::npos);
  }
}

TEST(ParkingName, RejectsControlCharactersButNotOtherPunctuation) {
  EXPECT_EQ(message_of(validate_name, "a\nb"), "invalid name: contains the control character U+000A");
  EXPECT_EQ(code_of(validate_name, std::string("a\0b", 3)), ExitCode::data);
  EXPECT_EQ(code_of(validate_name, "tab\there"), ExitCode::data);
  EXPECT_EQ(code_of(validate_name, "del\x7f"), ExitCode::data);
  EXPECT_EQ(message_of(validate_name, "c1 \xc2\x85"), "invalid name: contains the control character U+0085");
  EXPECT_EQ(code_of(validate_name, "'; DROP TABLE x; -- \"quoted\" \\ % $1"), ExitCode::ok);
  EXPECT_EQ(code_of(validate_name, " x "), ExitCode::ok);  // a name of only spaces is refused (small_checks_test.cpp)
}

TEST(ParkingUtf8, CountsCodePoints) {
  EXPECT_EQ(utf8_length(""), 0u);
  EXPECT_EQ(utf8_length("abc"), 3u);
  EXPECT_EQ(utf8_length("Z\xc3\xa9 \xf0\x9f\x9a\x97 \xe9\xa7\x90"), 6u);
  EXPECT_EQ(utf8_length("\xc3"), std::nullopt);
}

TEST(ParkingStatus, AcceptsExactlyTheThreeStatuses) {
  for (std::string_view ok : {"available", "blocked", "reserved"}) EXPECT_EQ(code_of(validate_status, ok), ExitCode::ok);
  for (std::string_view bad : {"", "Available", "open", "available ", "reserved;"})
    EXPECT_EQ(code_of(validate_status, bad), ExitCode::data) << bad;
  EXPECT_EQ(message_of(validate_status, "open"), "invalid status \"open\": must be available, blocked or reserved");
  EXPECT_EQ(message_of(validate_status, "a\nb"), "invalid status \"a\\nb\": must be available, blocked or reserved");
}

TEST(ParkingUuid, NormalizesCanonicalUuidsToLowerCase) {
  EXPECT_EQ(normalize_uuid("3F0C1D2E-4B5A-6978-8A9B-0C1D2E3F4A5B"), "3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(normalize_uuid("00000000-0000-0000-0000-000000000000"), "00000000-0000-0000-0000-000000000000");
}

TEST(ParkingUuid, RejectsAnythingElseWithADataError) {
  for (std::string bad : {"", "42", "3f0c1d2e4b5a69788a9b0c1d2e3f4a5b", "{3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b}",
                          "3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5g", "3f0c1d2e-4b5a-6978-8a9b0-c1d2e3f4a5b",
                          " 3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5", "3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b'"}) {
    try {
      normalize_uuid(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ExitCode::data);
      EXPECT_EQ(std::string(error.what()).rfind("invalid uuid \"", 0), 0u) << error.what();
    }
  }
}

TEST(ParkingUuid, RandomUuidsAreCanonicalVersion4AndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string uuid = random_uuid();
    EXPECT_EQ(normalize_uuid(uuid), uuid);
    EXPECT_EQ(uuid[14], '4') << uuid;
    EXPECT_NE(std::string("89ab").find(uuid[19]), std::string::npos) << uuid;
    seen.insert(uuid);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(ParkingFormat, JsonLineUsesCommaSpaceAndColonSpaceSeparators) {
  Slot slot{"3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b", "Slot 1", "available", 4};
  EXPECT_EQ(json_line(slot), R"({"uuid": "3f0c1d2e-4b5a-6978-8a9b-0c1d2e3f4a5b", "name": "Slot 1", "status": "available"})");
}

TEST(ParkingFormat, JsonLineEscapesQuotesBackslashesAndControlsButKeepsUnicode) {
  Slot slot{"u", "a \"b\" \\c\x01 Z\xc3\xa9 \xf0\x9f\x9a\x97 </x>", "blocked", 1};
  EXPECT_EQ(json_line(slot),
            "{\"uuid\": \"u\", \"name\": \"a \\\"b\\\" \\\\c\\u0001 Z\xc3\xa9 \xf0\x9f\x9a\x97 </x>\", \"status\": \"blocked\"}");
}

TEST(ParkingFormat, DetailsAlignsTheValues) {
  EXPECT_EQ(details({"u-1", "Name", "reserved", 2}), "uuid:   u-1\nname:   Name\nstatus: reserved\n");
}

}  // namespace
}  // namespace outbox::parking

TEST(Utf8, StorableTextIsValidUtf8WithoutNul) {
  EXPECT_TRUE(outbox::utf8::storable("plain ascii"));
  EXPECT_TRUE(outbox::utf8::storable("caf\xC3\xA9 \xF0\x9F\x9A\x97"));
  EXPECT_FALSE(outbox::utf8::storable(std::string("a\0b", 3)));
  EXPECT_FALSE(outbox::utf8::storable("\xC3"));          // truncated
  EXPECT_FALSE(outbox::utf8::storable("\xC0\xAF"));      // overlong
  EXPECT_FALSE(outbox::utf8::storable("\xED\xA0\x80"));  // a surrogate
}

TEST(Utf8, AStorableCopyReplacesEachBadByteAndNulWithTheReplacementCharacter) {
  EXPECT_EQ(outbox::utf8::storable_copy("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(outbox::utf8::storable_copy(std::string("a\0b", 3)),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(outbox::utf8::storable_copy("x\xFF\xFEy"), "x\xEF\xBF\xBD\xEF\xBF\xBDy");
  EXPECT_EQ(outbox::utf8::storable_copy("end\xC3"), "end\xEF\xBF\xBD");
}
