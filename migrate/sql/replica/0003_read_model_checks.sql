-- The read model checks what the write model checks (migration 0001 of the primary), so that an
-- event that the primary could never have produced (a forged or corrupted message: an empty or
-- 10 MB name, an unknown status) is refused by the replica and parked by replicate, instead of
-- being applied. NOT VALID: rows already there are not rechecked, so this never fails on an
-- existing replica; new and changed rows are checked.
ALTER TABLE parking_slots
    ADD CONSTRAINT parking_slots_name_length CHECK (char_length(name) BETWEEN 1 AND 200) NOT VALID,
    ADD CONSTRAINT parking_slots_status_valid CHECK (status IN ('available', 'blocked', 'reserved')) NOT VALID,
    ADD CONSTRAINT parking_slots_version_positive CHECK (version > 0) NOT VALID;
