#include "cmd/command.hpp"
namespace outbox::cmd {
}
