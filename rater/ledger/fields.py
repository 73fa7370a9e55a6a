"""What the ledger scripts store and what they are given, by name (keys are in keys.py).

Stored hash fields keep short names: they sit in every account, bucket and live leg (50,000
live legs at ~1.3 KB each), and a leg authorized before an upgrade is committed after it.
Read them with this table.

    account  <p>:{s<N>}:a:<account>
      bal      balance        settled balance, micro-units (opening + Σ ledger entries)
      held     held           money held for live legs' reserved chunks (moves at commit)
      ch       channels       live legs counted against max_channels (every level)
    bucket   <p>:{s<N>}:b:<order>      one package order's free seconds, this period
      left     seconds_left   free seconds not yet used (those held included)
      held     seconds_held   seconds held by live legs
      period   period_no      the period these counters belong to (a renewal bumps it)
      cap      cap_seconds    the period's allowance
      closed   closed         set when the order ended; the key goes with its last hold
    leg      <p>:{s<N>}:l:<uuid>
      st       state          authorized | answered | committed
      plan     plan           msgpack, fixed at authorization (below)
      dyn      progress       msgpack, what is reserved so far (below)
      keys     keys           the scripts' KEYS, one a line (for a restarted daemon)
      node     node           the FreeSWITCH node of the leg
      max      max_seconds    what authorization allowed
      T        granted        billed seconds reserved so far
      seq      last_seq       number of the last reservation
      ans      answered_usec  set by the first reservation that knows it
      cr       created_usec
      o:a, o:r:<seq>, o:c     operation id -> its first reply (a replay returns it)
      (a committed leg keeps only st, o:a and o:c, for leg_ttl_seconds: what replays read)
    ops      <p>:{s<N>}:ops            money operation id -> its first reply

Inside `plan` and `dyn` (msgpack maps, one per leg: short for the same reason):

    plan     acct dir dst caller node at (authorized, µs): the leg; lv its levels, customer first
    plan.lv  a account, fl floor, mc max_channels, q r (paid cost = q*P + round(r*P/DEN)),
             cf connect fee, incl included seconds, init first block, inc increment,
             ppm price per minute after markup, pfx prefix, rg rate group;
             b order ids, bp their periods at authorization, bk their KEYS positions
    dyn      T granted billed seconds; lv per level:
             S charged seconds held, P paid seconds held, M money held,
             F[j] seconds held in bucket j's period FP[j],
             U[j] seconds banked from an earlier period UP[j] (a renewal came meanwhile)

ARGV, in order (each script reads them into locals of these names; tests/test_ledger_names.py
checks the scripts and these tuples agree):
"""

from __future__ import annotations

AUTHORIZE_ARGV = (
    "op_field", "now_usec", "cap_seconds", "uuid", "account", "direction", "destination",
    "caller", "node", "n_levels",
)
"""authorize.lua, then AUTHORIZE_LEVEL_ARGV per level, then AUTHORIZE_TAIL."""

AUTHORIZE_LEVEL_ARGV = (
    ("account", "a"), ("floor", "fl"), ("max_channels", "mc"), ("q", "q"), ("r", "r"),
    ("connect_fee", "cf"), ("included", "incl"), ("init_inc", "init"), ("inc", "inc"),
    ("price_per_min", "ppm"), ("prefix", "pfx"), ("rate_group", "rg"), ("n_buckets", None),
)
"""Per level of authorize.lua, (name, the plan.lv field it is stored in), followed by
n_buckets x (order_id, period_no)."""

AUTHORIZE_TAIL = ("created_usec", "dry_run_billed")
"""After the levels. `dry_run_billed` (rater quote) makes it a dry run: the same decision,
nothing written, and the per-level figures with what that many billed seconds would cost."""

RESERVE_ARGV = ("op_field", "target", "answered_usec", "seq")

COMMIT_ARGV = (
    "op_field", "billed", "now_usec", "hangup_cause", "created_usec", "answered_usec",
    "hangup_usec", "settlement", "ttl", "uuid",
)

APPLY_ARGV = ("op_id", "now_usec", "allow_below_floor", "n_entries")
"""apply.lua, then n_entries x (account floor amount entry_id kind ref), n_buckets, n_buckets
x (action order_id period_no cap_seconds), extra (raw JSON or '')."""

SCRIPT_ARGV = {
    "authorize": AUTHORIZE_ARGV, "reserve": RESERVE_ARGV, "commit": COMMIT_ARGV,
    "apply": APPLY_ARGV,
}
