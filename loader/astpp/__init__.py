"""`loader sync-astpp`: ASTPP 6's own MySQL/MariaDB database as the source of reference data.

The package, one idea per module:

- `source`   connect by URL (PyMySQL) and read the ASTPP tables in one consistent snapshot;
- `mapping`  pure: ASTPP rows -> this project's dataset document (accounts, rate groups,
             routes, DIDs), plus every row that cannot be carried with the reason (README,
             "Syncing from ASTPP", holds the table);
- `packages` pure: the package half of the mapping (products, opt-ins, orders, counters);
- `model`    the records the mapping produces and the exact conversions of ASTPP values;
- `money`    money moves one way: ASTPP balances seed new accounts once, later portal
             payments and refills become balance adjustments exactly once, by row id;
- `cdrs`     `--write-cdrs`: finished CDRs written back into ASTPP's `cdrs`/`reseller_cdrs`;
- `run`      one sync (read, map, import through `loader.dataset`, publish through
             `loader.sync`), `--dry-run`, and `--watch`.
"""
