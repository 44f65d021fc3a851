#include "cmd/command.hpp"
namespace outbox::cmd {
void add_parking_commands(Registry&) {}
void add_relay_command(Registry&) {}
void add_replicate_command(Registry&) {}
}
