-- The billing handlers of the orchestrated saga: billing.authorize_payment and billing.refund,
-- each answered with outbox_reply in the same transaction as the money it moves.

-- Sets the bill's status (inserting the bill if there is none) and answers with `reply`.
CREATE FUNCTION billing.answer(booking uuid, bill_amount numeric, new_status text, reply text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    bill billing.bills;
BEGIN
    INSERT INTO billing.bills AS b (booking_id, amount, status, version)
    VALUES (booking, bill_amount, new_status, 1)
    ON CONFLICT (booking_id) DO UPDATE
       SET status = new_status, version = b.version + 1, updated_at = clock_timestamp()
    RETURNING * INTO bill;
    PERFORM outbox_reply(reply, 'bill', booking::text, bill.version,
                         jsonb_build_object('booking_id', booking, 'amount', bill.amount, 'status', bill.status));
END
$$;

CREATE FUNCTION billing.on_authorize_payment(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    booking uuid := (envelope->'payload'->>'booking_id')::uuid;
    requested numeric := (envelope->'payload'->>'amount')::numeric;
    bill billing.bills;
BEGIN
    SELECT * INTO bill FROM billing.bills WHERE booking_id = booking FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM billing.answer(booking, requested, 'paid', 'billing.authorized');
        INSERT INTO billing.payments (booking_id, kind, amount) VALUES (booking, 'charge', requested);
    ELSIF bill.status = 'paid' THEN
        PERFORM billing.answer(booking, bill.amount, 'paid', 'billing.authorized');  -- asked again
    ELSE
        -- Refunded or cancelled: the saga gave this payment up before it came.
        PERFORM billing.answer(booking, bill.amount, bill.status, 'billing.declined');
    END IF;
END
$$;

CREATE FUNCTION billing.on_refund(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    booking uuid := (envelope->'payload'->>'booking_id')::uuid;
    requested numeric := (envelope->'payload'->>'amount')::numeric;
    bill billing.bills;
BEGIN
    SELECT * INTO bill FROM billing.bills WHERE booking_id = booking FOR UPDATE;
    IF NOT FOUND THEN
        -- Nothing was charged (the refund overtook the authorization): cancel, so it never is.
        PERFORM billing.answer(booking, requested, 'cancelled', 'billing.refunded');
    ELSIF bill.status = 'paid' THEN
        INSERT INTO billing.payments (booking_id, kind, amount) VALUES (booking, 'refund', bill.amount);
        PERFORM billing.answer(booking, bill.amount, 'refunded', 'billing.refunded');
    ELSE
        PERFORM billing.answer(booking, bill.amount, bill.status, 'billing.refunded');  -- asked again
    END IF;
END
$$;
