-- The billing handlers (booking.created, parking.unavailable), the user's command billing.pay and
-- the deadline billing.expire_unpaid_bills.

-- Emits an event of `bill`, outside a handler too, with the saga's correlation id.
CREATE FUNCTION billing.emit(bill billing.bills, event_type text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    inherited text := current_setting('outbox.correlation_id', true);
BEGIN
    PERFORM set_config('outbox.correlation_id', coalesce(bill.correlation_id, ''), true);
    PERFORM outbox_emit(event_type, 'bill', bill.booking_id::text, bill.version,
                        jsonb_build_object('booking_id', bill.booking_id, 'slot_uuid', bill.slot_uuid,
                                           'amount', bill.amount, 'status', bill.status));
    PERFORM set_config('outbox.correlation_id', coalesce(inherited, ''), true);
END
$$;

-- booking.created: a bill request of 100, pending. A second delivery finds the bill and stops.
CREATE FUNCTION billing.on_booking_created(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO billing.bills (booking_id, slot_uuid, amount, correlation_id, due_at)
    VALUES ((envelope->'payload'->>'booking_id')::uuid, (envelope->'payload'->>'slot_uuid')::uuid, 100,
            coalesce(envelope->>'correlation_id', envelope->>'event_id'),
            clock_timestamp() + (SELECT payment_timeout FROM billing.settings))
    ON CONFLICT (booking_id) DO NOTHING;
END
$$;

-- The user's command: pays `amount` towards the booking's bill; returns the bill's status. When
-- the balance reaches 0 the bill is paid and bill.paid is emitted, in the same transaction.
-- Idempotent on `payment_id`. Refuses (SQLSTATE 22023) a bill that is not pending and a payment
-- above the balance.
CREATE FUNCTION billing.pay(booking uuid, amount numeric, payment_id uuid DEFAULT gen_random_uuid())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    bill billing.bills;
    balance numeric;
BEGIN
    SELECT * INTO bill FROM billing.bills WHERE booking_id = booking FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'billing.pay: no bill for booking %', booking USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT FROM billing.reconciliations r WHERE r.payment_id = pay.payment_id) THEN
        RETURN bill.status;  -- this payment was recorded before
    END IF;
    IF bill.status <> 'pending' THEN
        RAISE EXCEPTION 'billing.pay: the bill of booking % is %, not pending', booking, bill.status USING ERRCODE = '22023';
    END IF;
    balance := bill.amount - (SELECT coalesce(sum(r.amount), 0) FROM billing.reconciliations r WHERE r.booking_id = booking);
    IF amount <= 0 OR amount > balance THEN
        RAISE EXCEPTION 'billing.pay: % is not a payment towards a balance of %', amount, balance USING ERRCODE = '22023';
    END IF;
    INSERT INTO billing.reconciliations (payment_id, booking_id, amount) VALUES (payment_id, booking, amount);
    IF amount = balance THEN
        UPDATE billing.bills SET status = 'paid', version = version + 1, updated_at = clock_timestamp()
         WHERE booking_id = booking RETURNING * INTO bill;
        PERFORM billing.emit(bill, 'bill.paid');
    END IF;
    RETURN bill.status;
END
$$;

-- parking.unavailable: the compensation. Refunds this booking's bill if it was paid; anything
-- else (already refunded, a second delivery) changes nothing.
CREATE FUNCTION billing.on_parking_unavailable(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    bill billing.bills;
BEGIN
    UPDATE billing.bills SET status = 'refunded', version = version + 1, updated_at = clock_timestamp()
     WHERE booking_id = (envelope->'payload'->>'booking_id')::uuid AND status = 'paid'
    RETURNING * INTO bill;
    IF FOUND THEN
        INSERT INTO billing.refunds (booking_id, amount)
        SELECT bill.booking_id, sum(r.amount) FROM billing.reconciliations r WHERE r.booking_id = bill.booking_id;
        PERFORM billing.emit(bill, 'bill.refunded');
    END IF;
END
$$;

-- The deadline (every second): a bill not paid in time is cancelled, which fails its booking.
-- What the user paid towards it in part is refunded (billing.refunds), so that a cancelled bill,
-- like a refunded one, keeps none of the user's money. Returns how many it cancelled.
CREATE FUNCTION billing.expire_unpaid_bills() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    bill billing.bills;
    cancelled integer := 0;
BEGIN
    FOR bill IN UPDATE billing.bills SET status = 'cancelled', version = version + 1, updated_at = clock_timestamp()
                 WHERE booking_id IN (SELECT booking_id FROM billing.bills
                                       WHERE status = 'pending' AND due_at < clock_timestamp()
                                       ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED)
                RETURNING * LOOP
        -- The bill is locked since the subquery, so no payment can come between this sum and the
        -- cancellation (billing.pay locks it too).
        INSERT INTO billing.refunds (booking_id, amount)
        SELECT bill.booking_id, sum(r.amount) FROM billing.reconciliations r WHERE r.booking_id = bill.booking_id
        HAVING sum(r.amount) > 0;
        PERFORM billing.emit(bill, 'bill.cancelled');
        cancelled := cancelled + 1;
    END LOOP;
    RETURN cancelled;
END
$$;
