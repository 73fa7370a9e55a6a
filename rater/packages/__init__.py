"""Packages (free-minute products): their rules, prices and lifecycle.

Pure (no I/O):
    periods.py        where the n-th billing period starts and ends; times written in UTC
    pricing.py        what each level of a reseller chain pays (DESIGN §5)
    refunds.py        how much of a period an early termination refunds
    visibility.py     who may see, order or opt into a product (refusals name the rule)
    destinations.py   a package's prefixes picked from rate groups by filter

On PostgreSQL (store.py, its rows and queries) and the Redis ledger:
    context.py        Env (the connection and the ledger), open_env, look-ups, Refused
    charges.py        a chain's prices from the rows, the ledger entries that charge them
    orders.py         order, assign, apply to existing customers
    termination.py    end an order early, each level refunded its share
    renewals.py       renew or release orders at their period end
    offers.py         the products an account may see; a reseller's opt-in
    prefix_editor.py  list, add or remove a product's prefixes

Money moves only through the ledger, one `Ledger.apply` per charge event carrying every
level's entries and the bucket change, exactly once per operation id:

    order:<order>:p<n>   period n's price (and, for n = 0, the setup fee)
      entries  order:<order>:p<n>:<level>:price | :setup     (level 0 = the ordering account)
    terminate:<order>    early-termination refunds, bucket closed
      entries  refund:<order>:p<n>:<level>
    release:<order>      no money, bucket closed
"""
