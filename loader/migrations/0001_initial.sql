-- Reference data (rating tables), the durable record (ledger, CDRs) and package orders.
-- Money is bigint micro-units (10^-6 of the currency). Account numbers are the 10-digit
-- strings operators use; admin is the root of the tree and not a row here.

CREATE TABLE rate_groups (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    owner           text,                    -- NULL = admin, else a reseller's number
    markup_bp       integer NOT NULL DEFAULT 0 CHECK (markup_bp >= 0),  -- basis points
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    number          text PRIMARY KEY CHECK (number ~ '^[0-9]{10}$'),
    name            text NOT NULL DEFAULT '',
    parent          text REFERENCES accounts(number),  -- NULL = under admin
    kind            text NOT NULL CHECK (kind IN ('reseller', 'customer')),
    reseller_type   text CHECK (reseller_type IN ('margin', 'commission')),
    billing         text NOT NULL DEFAULT 'prepaid' CHECK (billing IN ('prepaid', 'postpaid')),
    credit_limit    bigint NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
    rate_group_id   bigint NOT NULL REFERENCES rate_groups(id),
    max_channels    integer NOT NULL DEFAULT 0 CHECK (max_channels >= 0),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (parent IS NULL OR parent <> number),
    CHECK ((kind = 'reseller') = (reseller_type IS NOT NULL))
);
CREATE INDEX accounts_parent ON accounts(parent);
CREATE INDEX accounts_rate_group ON accounts(rate_group_id);

ALTER TABLE rate_groups ADD CONSTRAINT rate_groups_owner_fk
    FOREIGN KEY (owner) REFERENCES accounts(number) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE rates (
    rate_group_id    bigint NOT NULL REFERENCES rate_groups(id) ON DELETE CASCADE,
    direction        text NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    prefix           text NOT NULL CHECK (prefix ~ '^[0-9]*$'),
    destination      text NOT NULL DEFAULT '',
    country          text NOT NULL DEFAULT '',
    call_type        text NOT NULL DEFAULT '',
    price_per_min    bigint NOT NULL CHECK (price_per_min >= 0),
    connect_fee      bigint NOT NULL DEFAULT 0 CHECK (connect_fee >= 0),
    included_seconds integer NOT NULL DEFAULT 0 CHECK (included_seconds >= 0),
    init_inc         integer NOT NULL DEFAULT 1 CHECK (init_inc >= 1),
    inc              integer NOT NULL DEFAULT 1 CHECK (inc >= 1),
    PRIMARY KEY (rate_group_id, direction, prefix)
);

CREATE TABLE blocked_prefixes (
    rate_group_id   bigint NOT NULL REFERENCES rate_groups(id) ON DELETE CASCADE,
    prefix          text NOT NULL CHECK (prefix ~ '^[0-9]+$'),
    PRIMARY KEY (rate_group_id, prefix)
);

CREATE TABLE dids (
    number          text PRIMARY KEY CHECK (number ~ '^[0-9]+$'),
    account         text NOT NULL REFERENCES accounts(number)
);

CREATE TABLE products (
    id                          bigserial PRIMARY KEY,
    owner                       text REFERENCES accounts(number),  -- NULL = admin
    name                        text NOT NULL,
    category                    text NOT NULL DEFAULT 'package',
    country                     text NOT NULL DEFAULT '',
    description                 text NOT NULL DEFAULT '',
    status                      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    buy_cost                    bigint NOT NULL DEFAULT 0 CHECK (buy_cost >= 0),
    price                       bigint NOT NULL DEFAULT 0 CHECK (price >= 0),
    setup_fee                   bigint NOT NULL DEFAULT 0 CHECK (setup_fee >= 0),
    commission_bp               integer NOT NULL DEFAULT 0 CHECK (commission_bp BETWEEN 0 AND 10000),
    billing_type                text NOT NULL DEFAULT 'recurring'
                                CHECK (billing_type IN ('one_time', 'recurring', 'monthly')),
    billing_days                integer NOT NULL DEFAULT 30 CHECK (billing_days >= 1),
    free_minutes                integer NOT NULL DEFAULT 0 CHECK (free_minutes >= 0),
    applicable_for              text NOT NULL DEFAULT 'outbound'
                                CHECK (applicable_for IN ('inbound', 'outbound', 'both')),
    charge_type                 text NOT NULL DEFAULT 'full'
                                CHECK (charge_type IN ('full', 'utilized_days', 'utilized_minutes', 'highest')),
    can_be_purchased            boolean NOT NULL DEFAULT true,
    reseller_can_resell         boolean NOT NULL DEFAULT true,
    admin_customers_can_order   boolean NOT NULL DEFAULT true,
    reseller_customers_can_order boolean NOT NULL DEFAULT true,
    release_if_no_balance       boolean NOT NULL DEFAULT true,
    rate_group_id               bigint REFERENCES rate_groups(id),
    apply_to_existing           boolean NOT NULL DEFAULT false,
    email_notification          boolean NOT NULL DEFAULT false,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
-- "unique per owner", admin (NULL) included
CREATE UNIQUE INDEX products_owner_name ON products (COALESCE(owner, ''), name);

CREATE TABLE product_prefixes (
    product_id      bigint NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    prefix          text NOT NULL CHECK (prefix ~ '^[0-9]*$'),
    destination     text NOT NULL DEFAULT '',
    PRIMARY KEY (product_id, prefix)
);

CREATE TABLE reseller_products (
    reseller                text NOT NULL REFERENCES accounts(number),
    product_id              bigint NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    opt_in                  boolean NOT NULL DEFAULT true,
    price                   bigint CHECK (price >= 0),      -- margin resellers' own price
    setup_fee               bigint CHECK (setup_fee >= 0),
    display_in_my_products  boolean NOT NULL DEFAULT true,
    PRIMARY KEY (reseller, product_id)
);

-- An order is one account's purchase of a product; its current period and bucket usage.
CREATE TABLE orders (
    id              text PRIMARY KEY,
    account         text NOT NULL REFERENCES accounts(number),
    product_id      bigint NOT NULL REFERENCES products(id),
    ordered_at      timestamptz NOT NULL,
    period_no       integer NOT NULL DEFAULT 0 CHECK (period_no >= 0),
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    used_seconds    bigint NOT NULL DEFAULT 0 CHECK (used_seconds >= 0),
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'released', 'terminated')),
    ended_at        timestamptz,
    end_reason      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (period_end > period_start)
);
CREATE INDEX orders_account ON orders(account);
CREATE INDEX orders_due ON orders(period_end) WHERE status = 'active';

-- The ledger: every movement of money, exactly once (the id makes a replay harmless).
CREATE TABLE ledger_entries (
    id              text PRIMARY KEY,
    account         text NOT NULL,
    amount          bigint NOT NULL,          -- credit > 0, debit < 0
    kind            text NOT NULL,            -- opening, call, topup, adjustment, product_setup, ...
    ref             text NOT NULL DEFAULT '', -- call uuid, order id, top-up reference
    created_at      timestamptz NOT NULL
);
CREATE INDEX ledger_entries_account ON ledger_entries(account);
CREATE INDEX ledger_entries_ref ON ledger_entries(ref);

-- One CDR per rated leg; one charge row per level (customer, then each reseller).
CREATE TABLE cdrs (
    uuid            text PRIMARY KEY,
    account         text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    caller          text NOT NULL DEFAULT '',
    destination     text NOT NULL,
    node            text NOT NULL DEFAULT '',
    created_at      timestamptz,
    answered_at     timestamptz,
    hangup_at       timestamptz,
    billed_seconds  integer NOT NULL CHECK (billed_seconds >= 0),
    hangup_cause    text NOT NULL DEFAULT '',
    settlement      text NOT NULL DEFAULT 'final',  -- final | as_reserved (ended unseen)
    total_cost      bigint NOT NULL DEFAULT 0,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX cdrs_account_time ON cdrs(account, recorded_at);
CREATE INDEX cdrs_recorded ON cdrs(recorded_at);

CREATE TABLE cdr_charges (
    cdr_uuid        text NOT NULL REFERENCES cdrs(uuid) ON DELETE CASCADE,
    level           smallint NOT NULL CHECK (level >= 0),
    account         text NOT NULL,
    rate_group      text NOT NULL DEFAULT '',
    prefix          text NOT NULL DEFAULT '',
    price_per_min   bigint NOT NULL DEFAULT 0,
    charged_seconds integer NOT NULL CHECK (charged_seconds >= 0),
    free_seconds    integer NOT NULL CHECK (free_seconds >= 0),
    cost            bigint NOT NULL,
    PRIMARY KEY (cdr_uuid, level)
);
CREATE INDEX cdr_charges_account ON cdr_charges(account);

-- Free seconds taken from each order's bucket by a leg.
CREATE TABLE package_usage (
    cdr_uuid        text NOT NULL REFERENCES cdrs(uuid) ON DELETE CASCADE,
    order_id        text NOT NULL,
    account         text NOT NULL,
    period_no       integer NOT NULL,
    seconds         integer NOT NULL CHECK (seconds > 0),
    PRIMARY KEY (cdr_uuid, order_id)
);
CREATE INDEX package_usage_order ON package_usage(order_id, period_no);

-- Credits and debits written by another system (a billing portal); applied to the live
-- balance exactly once by `loader sync` (the ledger entry id is 'adj:<id>').
CREATE TABLE balance_adjustments (
    id              bigserial PRIMARY KEY,
    account         text NOT NULL REFERENCES accounts(number),
    amount          bigint NOT NULL CHECK (amount <> 0),
    ref             text NOT NULL UNIQUE,
    note            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    applied_at      timestamptz
);
CREATE INDEX balance_adjustments_pending ON balance_adjustments(id) WHERE applied_at IS NULL;

-- Notifications ready for a mail sender.
CREATE TABLE notifications (
    id              text PRIMARY KEY,
    account         text NOT NULL,
    kind            text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX notifications_unsent ON notifications(created_at) WHERE sent_at IS NULL;

-- Bumped on every change of the reference data; the loader publishes snapshots by it.
CREATE TABLE reference_version (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version         bigint NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO reference_version (version) VALUES (1);

CREATE FUNCTION rater_reference_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE reference_version SET version = version + 1, changed_at = now();
    PERFORM pg_notify('rater_reference', '');
    RETURN NULL;
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rate_groups', 'accounts', 'rates', 'blocked_prefixes', 'dids',
                             'products', 'product_prefixes', 'reseller_products']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION rater_reference_changed()',
                       t || '_changed', t);
    END LOOP;
END $$;

-- Orders matter to rating only through which orders apply and when: usage updates by the
-- flusher must not trigger a snapshot rebuild.
CREATE TRIGGER orders_changed
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF account, product_id, status, period_no,
        period_start, period_end ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION rater_reference_changed();
