-- The billing service of the choreographed saga: a bill request per booking, the payments the
-- user makes against it (reconciliations) and the refunds.

CREATE SCHEMA billing;

-- pending -> paid (balance 0; emits bill.paid) -> refunded (parking.unavailable; emits bill.refunded)
-- pending -> cancelled (not paid before due_at; emits bill.cancelled)
CREATE TABLE billing.bills (
    booking_id     uuid          PRIMARY KEY,
    slot_uuid      uuid          NOT NULL,
    amount         numeric(12,2) NOT NULL CONSTRAINT bills_amount_positive CHECK (amount > 0),
    status         text          NOT NULL DEFAULT 'pending'
                                 CONSTRAINT bills_status_valid CHECK (status IN ('pending', 'paid', 'refunded', 'cancelled')),
    -- The saga's correlation id (from booking.created), given to the events billing emits later
    -- outside a handler (a payment, the deadline).
    correlation_id text,
    -- The aggregate version of this bill's events ("bill", booking_id).
    version        bigint        NOT NULL DEFAULT 1,
    due_at         timestamptz   NOT NULL,
    created_at     timestamptz   NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz   NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX bills_pending_due ON billing.bills (due_at) WHERE status = 'pending';

-- The user's payments. payment_id is the client's: a payment sent twice is recorded once.
CREATE TABLE billing.reconciliations (
    payment_id uuid          PRIMARY KEY,
    booking_id uuid          NOT NULL REFERENCES billing.bills,
    amount     numeric(12,2) NOT NULL CONSTRAINT reconciliations_amount_positive CHECK (amount > 0),
    at         timestamptz   NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX reconciliations_booking ON billing.reconciliations (booking_id);

-- At most one refund per bill: no double refund.
CREATE TABLE billing.refunds (
    booking_id uuid          PRIMARY KEY REFERENCES billing.bills,
    amount     numeric(12,2) NOT NULL CONSTRAINT refunds_amount_positive CHECK (amount > 0),
    at         timestamptz   NOT NULL DEFAULT clock_timestamp()
);

-- How long a bill waits for its payment before it is cancelled (billing.expire_unpaid_bills). One row.
CREATE TABLE billing.settings (
    only_row        boolean  PRIMARY KEY DEFAULT true CONSTRAINT settings_one_row CHECK (only_row),
    payment_timeout interval NOT NULL DEFAULT '15 minutes'
);
INSERT INTO billing.settings DEFAULT VALUES;
