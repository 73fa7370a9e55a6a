-- A new balance adjustment (a top-up written by a billing portal) wakes `loader sync --watch`,
-- which applies it to the live balance exactly once. No reference version bump: the rating
-- snapshot does not change.
CREATE FUNCTION rater_adjustment_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rater_adjustments', '');
    RETURN NULL;
END $$;

CREATE TRIGGER balance_adjustments_added AFTER INSERT ON balance_adjustments
    FOR EACH STATEMENT EXECUTE FUNCTION rater_adjustment_added();
