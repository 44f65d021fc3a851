#include "cmd/command.hpp"
namespace outbox::cmd {
void add_replicate_command(Registry&) {}
}
