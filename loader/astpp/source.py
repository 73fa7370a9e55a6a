"""Reading ASTPP 6's database (MySQL or MariaDB) with PyMySQL, in one consistent snapshot.

Every amount is read as DECIMAL (PyMySQL returns `decimal.Decimal`); the one DOUBLE column
used (`dids.cost`) is cast to DECIMAL(20,5) in SQL, the precision ASTPP declares, so no
float ever carries money.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from rater.errors import ConfigError, RaterError


class AstppUnavailable(RaterError):
    """The ASTPP database cannot be reached or read."""


@dataclass(frozen=True)
class AstppUrl:
    """`mysql://user:password@host:port/database` (`?unix_socket=/path` also accepted)."""

    host: str
    port: int
    user: str
    password: str
    database: str
    unix_socket: str | None = None

    @classmethod
    def parse(cls, url: str) -> AstppUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise ConfigError(f"--from: expected mysql://user:pass@host/database, got "
                              f"{parts.scheme or 'no'} scheme")
        database = parts.path.lstrip("/")
        if not database:
            raise ConfigError("--from: the URL names no database (mysql://.../astpp)")
        query = parse_qs(parts.query)
        return cls(parts.hostname or "127.0.0.1", parts.port or 3306,
                   unquote(parts.username or "root"), unquote(parts.password or ""),
                   database, next(iter(query.get("unix_socket", ())), None))

    def masked(self) -> str:
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.database}"


@contextmanager
def connect(url: str, *, timeout: float = 10.0) -> Iterator[Any]:
    """A PyMySQL connection (dict rows, autocommit off); closed on exit."""
    import pymysql

    where = AstppUrl.parse(url)
    try:
        conn = pymysql.connect(
            host=where.host, port=where.port, user=where.user, password=where.password,
            database=where.database, unix_socket=where.unix_socket, charset="utf8mb4",
            cursorclass=pymysql.cursors.DictCursor, connect_timeout=timeout,
            read_timeout=max(timeout, 60.0), write_timeout=max(timeout, 60.0),
            autocommit=False,
        )
    except pymysql.MySQLError as exc:
        raise AstppUnavailable(f"cannot reach ASTPP at {where.masked()}: {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


# The columns read from each table: only those the mapping uses.
QUERIES: dict[str, str] = {
    "accounts": """
        SELECT id, number, reseller_id, pricelist_id, status, deleted, type, posttoexternal,
               credit_limit, balance, maxchannels, is_distributor, first_name, last_name,
               company_name
        FROM accounts ORDER BY id""",
    "pricelists": """
        SELECT id, name, markup, initially_increment, inc, status, reseller_id
        FROM pricelists ORDER BY id""",
    "routes": """
        SELECT id, pattern, comment, connectcost, includedseconds, cost, pricelist_id, inc,
               init_inc, call_type, accountid, status
        FROM routes ORDER BY id""",
    "dids": """
        SELECT id, number, accountid, parent_id, connectcost, includedseconds,
               CAST(cost AS DECIMAL(20,5)) AS cost, init_inc, inc, status
        FROM dids ORDER BY id""",
    "products": """
        SELECT id, name, description, product_category, buy_cost, price, setup_fee,
               can_resell, commission, billing_type, billing_days, free_minutes,
               applicable_for, release_no_balance, can_purchase, status, is_deleted, reseller_id
        FROM products ORDER BY id""",
    "package_patterns": """
        SELECT id, product_id, patterns, destination FROM package_patterns ORDER BY id""",
    "reseller_products": """
        SELECT id, product_id, account_id, reseller_id, status, price, setup_fee, commission,
               is_owner, is_optin
        FROM reseller_products ORDER BY id""",
    "order_items": """
        SELECT i.id, i.order_id, i.product_id, i.accountid, i.free_minutes, i.is_terminated,
               i.termination_date, o.order_date
        FROM order_items i JOIN orders o ON o.id = i.order_id
        ORDER BY i.id""",
    "counters": """
        SELECT id, package_id, product_id, accountid, used_seconds, status
        FROM counters ORDER BY id""",
    "block_patterns": """
        SELECT id, accountid, blocked_patterns FROM block_patterns ORDER BY id""",
    "invoice_details": """
        SELECT id, accountid, order_item_id, charge_type, description, debit, credit,
               created_date
        FROM invoice_details ORDER BY id""",
}


@dataclass
class AstppData:
    """The rows of every table read, as dicts keyed by column name."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __getitem__(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])


def read_all(conn: Any) -> AstppData:
    """Read every table in one REPEATABLE READ snapshot, so balances and the payment rows
    that made them are seen at the same instant. Zero dates read as None."""
    import pymysql

    data = AstppData()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            for table, sql in QUERIES.items():
                cur.execute(sql)
                data.tables[table] = list(cur.fetchall())
        conn.rollback()
    except pymysql.MySQLError as exc:
        raise AstppUnavailable(f"reading ASTPP failed: {exc}") from None
    return data
