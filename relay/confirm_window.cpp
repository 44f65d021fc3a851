#include "relay/confirm_window.hpp"

#include <algorithm>

namespace outbox::relay {

void ConfirmWindow::add(Batch batch) {
  unconfirmed_ += batch.positions.size();
  positions_[batch.table].insert(batch.positions.begin(), batch.positions.end());
  batches_.push_back(std::move(batch));
}

void ConfirmWindow::on_confirm(uint64_t tag, bool multiple, Clock::time_point now) {
  uint64_t before = confirmed_through_;
  if (multiple) {
    confirmed_through_ = std::max(confirmed_through_, tag);
  } else if (tag == confirmed_through_ + 1) {
    confirmed_through_ = tag;
  } else if (tag > confirmed_through_) {
    confirmed_ahead_.insert(tag);
  }
  while (!confirmed_ahead_.empty() && *confirmed_ahead_.begin() <= confirmed_through_ + 1) {
    confirmed_through_ = std::max(confirmed_through_, *confirmed_ahead_.begin());
    confirmed_ahead_.erase(confirmed_ahead_.begin());
  }
  if (confirmed_through_ > before) prefix_advanced_ = now;
}

void ConfirmWindow::new_channel() {
  confirmed_through_ = 0;
  confirmed_ahead_.clear();
}

ConfirmWindow::Confirmed ConfirmWindow::confirmed() const {
  Confirmed confirmed;
  confirmed.positions.resize(positions_.size());
  for (const Batch& batch : batches_) {
    if (!is_confirmed(batch)) break;
    std::vector<long long>& table = confirmed.positions[batch.table];
    table.insert(table.end(), batch.positions.begin(), batch.positions.end());
    confirmed.published.push_back(batch.published);
    ++confirmed.batches;
  }
  return confirmed;
}

std::vector<ConfirmWindow::Batch> ConfirmWindow::complete(size_t batches) {
  std::vector<Batch> completed;
  for (size_t i = 0; i < batches && !batches_.empty(); ++i) {
    Batch& batch = batches_.front();
    for (long long position : batch.positions) positions_[batch.table].erase(position);
    unconfirmed_ -= batch.positions.size();
    completed.push_back(std::move(batch));
    batches_.pop_front();
  }
  return completed;
}

void ConfirmWindow::clear() {
  batches_.clear();
  for (auto& positions : positions_) positions.clear();
  unconfirmed_ = 0;
}

const ConfirmWindow::Batch* ConfirmWindow::oldest_unconfirmed() const {
  auto found = std::find_if(batches_.begin(), batches_.end(), [this](const Batch& batch) { return !is_confirmed(batch); });
  return found == batches_.end() ? nullptr : &*found;
}

std::vector<std::pair<size_t, long long>> ConfirmWindow::unconfirmed_rows() const {
  std::vector<std::pair<size_t, long long>> rows;
  for (const Batch& batch : batches_)
    if (!is_confirmed(batch))
      for (long long position : batch.positions) rows.emplace_back(batch.table, position);
  return rows;
}

}  // namespace outbox::relay
