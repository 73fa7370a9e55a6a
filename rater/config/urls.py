"""URLs in the configuration: the host list of a multi-host Redis URL, and a URL's password
masked for logs and `check-config`."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit


def host_list(
    parts: SplitResult, what: str, default_port: int
) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The `host[:port],...` list and credentials of a multi-host Redis URL."""
    if parts.query or parts.fragment:
        raise ValueError(f"a {parts.scheme}:// URL takes no ?query or #fragment")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        host, port = item, ""
        if ":" in item and not item.endswith("]"):  # [v6] alone has no port
            host, _, port = item.rpartition(":")
        host = host.strip("[]")
        if not host or (port and not port.isdigit()) or not 0 < int(port or default_port) < 65536:
            raise ValueError(f"{item!r} is not a {what} host[:port]")
        hosts.append((host, int(port or default_port)))
    return hosts, unquote(user) or None, unquote(password) or None


def mask_url(url: str) -> str:
    """Hide the password of a URL (`redis://:***@host`)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")  # hosts: one, or several (Sentinel)
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))
