// core/pg_array.hpp: the bytes of a binary array as PostgreSQL's array_recv reads them.
// (lean_apply_test has the server read them back.)
#include "core/pg_array.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "tests/support/binary_array.hpp"

using outbox::pg::BinaryArray;
using outbox::testing::binary_array_text;
using Element = BinaryArray::Element;

namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int value : values) out += static_cast<char>(value);
  return out;
}

}  // namespace

TEST(BinaryArray, AnInt8ArrayIsItsHeaderThenEachElementAsLengthAndBigEndianBytes) {
  BinaryArray array(Element::int8);
  array.add_int8(1);
  array.add_int8(-2);
  EXPECT_EQ(array.bytes(), bytes({0, 0, 0, 1,                                  // one dimension
                                  0, 0, 0, 0,                                  // no NULL
                                  0, 0, 0, 20,                                 // int8
                                  0, 0, 0, 2,                                  // two elements
                                  0, 0, 0, 1,                                  // from index 1
                                  0, 0, 0, 8,  0,  0,  0,  0,  0,  0,  0,  1,  //
                                  0, 0, 0, 8,  -1, -1, -1, -1, -1, -1, -1, -2}));
}

TEST(BinaryArray, ANullSetsTheNullFlagAndIsALengthOfMinusOne) {
  BinaryArray array(Element::int4);
  array.add_int4(-2);
  array.add_null();
  EXPECT_EQ(array.bytes(), bytes({0, 0, 0, 1, 0,  0,  0,  1,  0,  0,  0,  23, 0, 0, 0, 2, 0, 0, 0, 1,  //
                                  0, 0, 0, 4, -1, -1, -1, -2, -1, -1, -1, -1}));
  EXPECT_EQ(binary_array_text(array.bytes()), "{-2,NULL}");
}

TEST(BinaryArray, AnEmptyArrayHasNoDimensions) {
  EXPECT_EQ(BinaryArray(Element::text).bytes(), bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25}));
  EXPECT_EQ(binary_array_text(BinaryArray(Element::text).bytes()), "{}");
}

TEST(BinaryArray, ATextElementIsItsBytesAsTheyAreWithNothingEscaped) {
  BinaryArray array(Element::text);
  array.add_text("a\"b\\c,{}");
  array.add_text("");
  array.add_text(std::string("nul\0byte", 8));
  std::string all = array.bytes();
  EXPECT_EQ(all.substr(20, 12), bytes({0, 0, 0, 8}) + "a\"b\\c,{}");
  EXPECT_EQ(all.substr(32, 4), bytes({0, 0, 0, 0}));
  EXPECT_EQ(all.substr(36), bytes({0, 0, 0, 8}) + std::string("nul\0byte", 8));
}

TEST(BinaryArray, AUuidIsItsSixteenBytesInEitherCaseWithOrWithoutDashes) {
  BinaryArray array(Element::uuid);
  array.add_uuid("0B0E6F8E-8a4e-4c1e-9d51-3a4b8e1f2c3d");
  array.add_uuid("0b0e6f8e8a4e4c1e9d513a4b8e1f2c3d");
  std::string all = array.bytes();
  EXPECT_EQ(all.substr(20, 20),
            bytes({0, 0, 0, 16, 0x0b, 0x0e, 0x6f, 0x8e, 0x8a, 0x4e, 0x4c, 0x1e, 0x9d, 0x51, 0x3a, 0x4b, 0x8e, 0x1f, 0x2c, 0x3d}));
  EXPECT_EQ(binary_array_text(all), "{0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d,0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d}");
}

TEST(BinaryArray, ATextThatIsNotAUuidIsRefusedAndTheArrayIsUnchanged) {
  BinaryArray array(Element::uuid);
  for (const char* bad : {"", "0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3", "0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d0",
                          "0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3g", "0b0e6f8e 8a4e-4c1e-9d51-3a4b8e1f2c3d"})
    EXPECT_THROW(array.add_uuid(bad), std::invalid_argument) << bad;
  EXPECT_EQ(array.size(), 0u);
  EXPECT_EQ(binary_array_text(array.bytes()), "{}");
}

TEST(BinaryArray, AnElementOfAnotherTypeThanTheArraysIsAProgrammingError) {
  BinaryArray array(Element::int4);
  EXPECT_THROW(array.add_int8(1), std::logic_error);
  EXPECT_THROW(array.add_text("1"), std::logic_error);
  EXPECT_THROW(array.add_uuid("0b0e6f8e-8a4e-4c1e-9d51-3a4b8e1f2c3d"), std::logic_error);
  EXPECT_EQ(array.size(), 0u);
}
