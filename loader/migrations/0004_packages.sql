-- Package lifecycle (rater/packages): what each level of the reseller chain paid for each
-- period of an order, so an early termination refunds every level its own share of what it
-- actually paid (prices and opt-ins may change between the charge and the termination).
-- Written after the Redis ledger operation succeeded; the ledger itself stays the record of
-- money, this table only remembers the split.
CREATE TABLE order_charges (
    order_id    text NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    period_no   integer NOT NULL CHECK (period_no >= 0),
    level       smallint NOT NULL CHECK (level >= 0),   -- 0 = the ordering account
    account     text NOT NULL,
    price       bigint NOT NULL CHECK (price >= 0),
    setup_fee   bigint NOT NULL DEFAULT 0 CHECK (setup_fee >= 0),
    refunded    bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    charged_at  timestamptz NOT NULL,
    PRIMARY KEY (order_id, period_no, level)
);

-- "Has this account ordered this product before?" (setup fee, apply to existing customers).
CREATE INDEX orders_account_product ON orders(account, product_id);
