#include "replicate/partition_share.hpp"

#include <algorithm>

#include "core/pg.hpp"

namespace outbox::replicate {

bool gives_back(const std::set<int>& owned, int share, int partition) {
  if (!owned.count(partition)) return false;
  int over = static_cast<int>(owned.size()) - std::max(share, 0);
  for (auto it = owned.rbegin(); it != owned.rend() && over > 0; ++it, --over)
    if (*it == partition) return true;
  return false;
}

PartitionShare::PartitionShare(std::string url, std::string name, bool consumer, int partitions)
    : url_(std::move(url)),
      role_((consumer ? "consumer " : "replica ") + name),
      program_(consumer ? "outbox-consume" : "outbox-replicate"),
      member_key_((consumer ? "outbox consume member " : "outbox replicate member ") + name),
      partitions_(partitions) {}

PartitionShare::~PartitionShare() = default;

void PartitionShare::refresh() {
  auto now = std::chrono::steady_clock::now();
  if (db_ && now < next_refresh_) return;
  next_refresh_ = now + std::chrono::seconds(1);
  try {
    if (!db_) {
      db_ = pg::connect(url_, role_ + " (partition share)", program_);
      slot_ = -1;
    }
    pqxx::nontransaction tx(*db_);
    tx.exec("SET statement_timeout = '5s'");
    const std::string& key = member_key_;
    for (int slot = 0; slot < kMemberSlots && slot_ < 0; ++slot)
      if (tx.exec_params1("SELECT pg_try_advisory_lock(hashtext($1), $2)", key, slot)[0].as<bool>()) slot_ = slot;
    members_ = tx.exec_params1(
                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                     "AND classid = hashtext($1)::oid",
                     key)[0]
                   .as<int>();
  } catch (const std::exception&) {
    db_.reset();  // its member slot ended with the session; taken again at the next refresh
    slot_ = -1;
  }
}

bool PartitionShare::may_take() {
  refresh();
  return static_cast<int>(owned_.size()) < fair_share(partitions_, members_);
}

bool PartitionShare::should_give_back(int partition) {
  refresh();
  return gives_back(owned_, fair_share(partitions_, members_), partition);
}

std::string PartitionShare::describe() const {
  return "serves " + std::to_string(owned_.size()) + " of " + std::to_string(partitions_) + " partitions with " +
         std::to_string(members_) + " process(es)";
}

}  // namespace outbox::replicate
