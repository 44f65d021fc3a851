#pragma once
// Arrays for bound parameters in PostgreSQL's binary format: what the server's array_send writes
// and its array_recv reads.
#include <cstdint>
#include <string>
#include <string_view>

namespace outbox::pg {

// A one-dimensional array of one element type, built element by element and sent as a binary
// parameter (pqxx::binarystring). The server reads each element with its type's binary receive
// function: an int8 is 8 bytes, a uuid 16, a text its bytes as they are. A text literal
// ("{1,NULL,\"a\\\"b\"}") is first split and unquoted, then each element parsed from text; for
// the apply's nine columns of a batch that was a measurable part of the replica's CPU per event.
// The statement's cast ($5::uuid[]) gives the parameter its type, and array_recv refuses an array
// whose element type is not that type's, so a mix-up fails loudly.
class BinaryArray {
 public:
  // The element types' OIDs, fixed in PostgreSQL's catalog (pg_type.dat).
  enum class Element : std::uint32_t { int8 = 20, int4 = 23, text = 25, uuid = 2950 };

  explicit BinaryArray(Element element);
  // Room for this many bytes of elements (each element is 4 bytes of length and its data).
  void reserve(std::size_t element_bytes);

  // Each adder checks that it matches the array's element type (std::logic_error otherwise).
  void add_int8(std::int64_t value);
  void add_int4(std::int32_t value);
  void add_text(std::string_view text);
  // A uuid in its text form, with or without dashes, in either case; anything else throws
  // std::invalid_argument.
  void add_uuid(std::string_view text);
  void add_null();

  // The whole array: header (dimensions, null flag, element type, length, lower bound 1), then
  // each element as its length and bytes (a NULL as length -1). All integers big-endian.
  std::string bytes() const;
  std::size_t size() const { return count_; }

 private:
  void expect(Element element) const;
  void append_int32(std::int32_t value);

  Element element_;
  std::string elements_;
  std::size_t count_ = 0;
  bool has_null_ = false;
};

}  // namespace outbox::pg
