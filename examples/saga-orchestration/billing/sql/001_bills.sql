-- The billing service of the orchestrated saga: a bill per booking and the money that moved.

CREATE SCHEMA billing;

-- One bill per booking, never deleted (a refund that overtakes its authorization leaves
-- 'cancelled', so that the late authorization charges nothing).
CREATE TABLE billing.bills (
    booking_id uuid          PRIMARY KEY,
    amount     numeric(12,2) NOT NULL CONSTRAINT bills_amount_positive CHECK (amount > 0),
    status     text          NOT NULL CONSTRAINT bills_status_valid CHECK (status IN ('paid', 'refunded', 'cancelled')),
    -- The aggregate version of this bill's replies ("bill", booking_id): one per reply.
    version    bigint        NOT NULL DEFAULT 0,
    created_at timestamptz   NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz   NOT NULL DEFAULT clock_timestamp()
);

-- Every movement of money. At most one charge and one refund per booking: no double charge.
CREATE TABLE billing.payments (
    id         bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id uuid          NOT NULL REFERENCES billing.bills,
    kind       text          NOT NULL CONSTRAINT payments_kind_valid CHECK (kind IN ('charge', 'refund')),
    amount     numeric(12,2) NOT NULL CONSTRAINT payments_amount_positive CHECK (amount > 0),
    at         timestamptz   NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payments_one_of_each UNIQUE (booking_id, kind)
);
