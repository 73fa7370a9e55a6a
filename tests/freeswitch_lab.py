"""The real-switch tier's switch side: a running FreeSWITCH named by the environment, what
the tier installs into it, and where sipp (tests/freeswitch_sipp.py) sends its calls.

    RATER_TEST_FREESWITCH=127.0.0.1:8021      Event Socket of the switch (required)
    RATER_TEST_FREESWITCH_PASSWORD=ClueCon    its password
    RATER_TEST_FREESWITCH_CONF=/etc/freeswitch  its conf dir (this tier installs files there)
    RATER_TEST_FREESWITCH_SIP=127.0.0.1:5060  the profile that authenticates callers
    RATER_TEST_FREESWITCH_PUBLIC=127.0.0.1:5080  the profile carrier traffic uses (context public)
    RATER_TEST_SIPP=/path/to/sipp             default: sipp on PATH

What the switch needs (README, "Real-switch test tier"): a stock-like configuration whose
authenticating profile sends directory users to their user_context ("default"), a profile
landing in "public", the stock dialplan/directory includes, and nothing else using it.
The harness installs the shipped dialplan (only the far-end dial strings and the decision
socket's address rewritten, see `point_far_ends` and `point_socket`) and one directory user
per account, runs `reloadxml`, and removes it all
at the end. The rater side (dataset, daemon, fixtures) is tests/freeswitch_world.py; all
three are also used by benchmarks/bench_freeswitch.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from tests.freeswitch_sipp import DATA, Call, SippRun, Uas

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "freeswitch" / "dialplan"

ENV_ESL = "RATER_TEST_FREESWITCH"
SKIP_REASON = (
    f"real-switch tier: set {ENV_ESL}=host:port (the Event Socket of a running FreeSWITCH "
    f"dedicated to tests) and {ENV_ESL}_CONF=<its conf dir> to run it; the tier installs "
    "the shipped dialplan and test users there and places real calls with sipp "
    "(README, Development, Real-switch test tier)")


def wait_until(cond: Callable[[], object], timeout: float, what: str,
               every: float = 0.1) -> None:
    """Poll `cond` until it is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


@dataclasses.dataclass(frozen=True)
class LabSettings:
    esl: tuple[str, int]
    password: str
    conf_dir: Path
    sip: tuple[str, int]
    public: tuple[str, int]
    sipp: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LabSettings | str:
        """The settings, or why the tier cannot run (a skip message)."""
        if not env.get(ENV_ESL):
            return SKIP_REASON
        conf = env.get(f"{ENV_ESL}_CONF", "")
        if not conf or not (Path(conf) / "freeswitch.xml").is_file():
            return (f"real-switch tier: {ENV_ESL}_CONF must name the conf dir of the switch "
                    f"at {env[ENV_ESL]} (the directory holding freeswitch.xml); got {conf!r}")
        sipp = env.get("RATER_TEST_SIPP") or shutil.which("sipp") or ""
        if not sipp or not os.access(sipp, os.X_OK):
            return ("real-switch tier: sipp not found; set RATER_TEST_SIPP=/path/to/sipp "
                    "(callers and far end are sipp)")
        return cls(esl=_addr(env[ENV_ESL]),
                   password=env.get(f"{ENV_ESL}_PASSWORD", "ClueCon"), conf_dir=Path(conf),
                   sip=_addr(env.get(f"{ENV_ESL}_SIP", "127.0.0.1:5060")),
                   public=_addr(env.get(f"{ENV_ESL}_PUBLIC", "127.0.0.1:5080")), sipp=sipp)


# --- Event Socket: a few blocking `api` commands, independent of the daemon's ESL code ------

class EslClient:
    """One inbound Event Socket connection used for `api` commands only."""

    def __init__(self, addr: tuple[str, int], password: str, timeout: float = 10) -> None:
        self._sock = socket.create_connection(addr, timeout=timeout)
        self._sock.settimeout(timeout)
        self._buf = b""
        self._frame()  # auth/request
        self._sock.sendall(f"auth {password}\n\n".encode())
        headers, _ = self._frame()
        if not headers.get("Reply-Text", "").startswith("+OK"):
            raise ConnectionError(f"ESL auth refused: {headers.get('Reply-Text')}")

    def api(self, command: str) -> str:
        self._sock.sendall(f"api {command}\n\n".encode())
        while True:
            headers, body = self._frame()
            if headers.get("Content-Type") == "api/response":
                return body

    def close(self) -> None:
        self._sock.close()

    def _frame(self) -> tuple[dict[str, str], str]:
        while b"\n\n" not in self._buf:
            self._recv()
        head, self._buf = self._buf.split(b"\n\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().splitlines() if ": " in line)
        length = int(headers.get("Content-Length", 0))
        while len(self._buf) < length:
            self._recv()
        body, self._buf = self._buf[:length], self._buf[length:]
        return headers, body.decode()

    def _recv(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("ESL connection closed")
        self._buf += data


# --- what the tier installs into the switch -----------------------------------------------

_BRIDGE = re.compile(r'(<action application="bridge" data=")([^"]*)(")')


def point_far_ends(rated_xml: str, far_end: str, profile: str = "internal") -> str:
    """The shipped rated.xml with its bridge dial strings (the far ends: the carrier gateway,
    the DID owner's phone) sent to `far_end` (host:port) through sofia `profile`. This is the
    only change the tier makes to rated.xml."""
    out, n = _BRIDGE.subn(rf"\g<1>sofia/{profile}/$1@{far_end}\g<3>", rated_xml)
    if n != 2:
        raise ValueError(f"rated.xml: expected 2 bridge actions, found {n}")
    return out


_SOCKET = re.compile(r'( *<action application="socket" data=")([^"]*)("/>\n)')


def point_socket(dialplan_xml: str, address: str | None) -> str:
    """A shipped dialplan file whose `socket` action (the rater's decision socket) names
    `address` (host:port) instead of the shipped 127.0.0.1:8084; None removes the action,
    so that calls park at once (the daemon's other path)."""
    if address is None:
        out, n = _SOCKET.subn("", dialplan_xml)
    else:
        out, n = _SOCKET.subn(rf"\g<1>{address}\g<3>", dialplan_xml)
    if n != 1:
        raise ValueError(f"expected one socket action, found {n}")
    return out


@dataclasses.dataclass(frozen=True)
class SipUser:
    """A directory user; `accountcode` (a user variable) names the account that pays."""

    user_id: str
    accountcode: str | None
    password: str = dataclasses.field(default_factory=lambda: secrets.token_hex(8))

    def directory_xml(self) -> str:
        code = "" if self.accountcode is None else (
            f'\n      <variable name="accountcode" value="{self.accountcode}"/>')
        return (DATA / "directory_user.xml").read_text().format(
            user=self.user_id, password=self.password, accountcode_variable=code)


class SwitchFiles:
    """Installs files into the switch's conf dir and takes them away again (a file the
    switch had is put back as it was)."""

    def __init__(self, conf_dir: Path, esl: EslClient) -> None:
        self.conf_dir = conf_dir
        self.esl = esl
        self.installed: dict[Path, str | None] = {}   # path -> the switch's own text

    def put(self, relative: str, text: str, *, replace: bool = False) -> None:
        path = self.conf_dir / relative
        if path not in self.installed:
            if path.exists() and not replace:
                raise FileExistsError(
                    f"{path} exists and is not the tier's (a run stopped before its clean-up "
                    f"leaves its files behind: remove them, then fs_cli -x reloadxml)")
            self.installed[path] = path.read_text() if path.exists() else None
        path.write_text(text)

    def install_rater(self, far_end: str, users: Iterable[SipUser],
                      decision_socket: str | None) -> None:
        """The shipped dialplan (outbound into default, inbound into public, rated as its own
        context), asking the decision socket at `decision_socket` (None: calls park), and
        one directory user per account."""
        self.put("dialplan/default/00_rater_outbound.xml", point_socket(
            (SHIPPED / "00_rater_outbound.xml").read_text(), decision_socket))
        self.put("dialplan/public/00_rater_inbound.xml", point_socket(
            (SHIPPED / "00_rater_inbound.xml").read_text(), decision_socket))
        self.put("dialplan/rated.xml", point_far_ends((SHIPPED / "rated.xml").read_text(),
                                                      far_end))
        for u in users:
            self.put(f"directory/default/rater_test_{u.user_id}.xml", u.directory_xml())

    def reload(self) -> None:
        out = self.esl.api("reloadxml").strip()
        if not out.startswith("+OK"):
            raise RuntimeError(f"reloadxml refused the configuration: {out}")

    def remove_all(self) -> None:
        for path, original in self.installed.items():
            if original is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(original)
        self.installed.clear()
        self.reload()


RECORDS_CONF = "autoload_configs/cdr_pg_csv.conf.xml"
_DB_INFO = re.compile(r'(<param name="db-info" value=")[^"]*(")')


def point_records_at(conf_xml: str, database_url: str) -> str:
    """The shipped cdr_pg_csv.conf.xml writing FreeSWITCH's call records into the database
    of `database_url` (postgresql://)."""
    u = urlsplit(database_url)
    info = (f"host={u.hostname} port={u.port or 5432} dbname={u.path.lstrip('/')} "
            f"user={u.username or 'postgres'}"
            + (f" password={u.password}" if u.password else "") + " connect_timeout=5")
    out, n = _DB_INFO.subn(rf"\g<1>{info}\g<2>", conf_xml)
    if n != 1:
        raise ValueError(f"cdr_pg_csv.conf.xml: expected one db-info, found {n}")
    return out


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so that a benchmark stopped that way still runs its
    clean-up (the lab's files taken back out of the switch's conf dir) instead of dying."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


class Lab:
    """The switch side, set up once: Event Socket, the far-end UAS, the installed files.

    `users` maps each account to its directory user; calls' callers start with
    `caller_prefix` so that `hang_up_ours` finds the tier's leftover channels. When the
    shipped FreeSWITCH side has a mod_cdr_pg_csv configuration and the switch runs the
    module, `records_to` points it at a test's database."""

    def __init__(self, settings: LabSettings, workdir: Path, accounts: Iterable[str],
                 decision_socket: str | None = None, *, media: bool = False) -> None:
        self.settings = settings
        self.media = media
        self.workdir = workdir
        self.decision_socket = decision_socket
        self.esl = EslClient(settings.esl, settings.password)
        self.domain = self.esl.api("global_getvar domain").strip() or settings.sip[0]
        self.caller_prefix = f"t{secrets.randbelow(9000) + 1000}"
        self.users = {a: SipUser(f"rt{a}", a) for a in accounts}
        self.records = ((SHIPPED.parent / "cdr_pg_csv.conf.xml").is_file() and
                        self.esl.api("module_exists mod_cdr_pg_csv").strip() == "true")
        self.uas = Uas(settings.sipp, workdir, media=media)
        self.files = SwitchFiles(settings.conf_dir, self.esl)
        try:
            self.files.install_rater(self.uas.address, self.users.values(), decision_socket)
            self.files.reload()
        except Exception:
            self.close()
            raise

    def use_decision_socket(self, address: str | None) -> None:
        """Install the shipped dialplan again asking `address` (None: calls park at once)."""
        self.files.install_rater(self.uas.address, self.users.values(), address)
        self.files.reload()
        self.decision_socket = address

    def caller(self, n: int) -> str:
        return f"{self.caller_prefix}{n:05d}"

    def place(self, calls: list[Call], workdir: Path, name: str, *, rate: float = 10,
              limit: int = 500) -> SippRun:
        """sipp placing `calls`: authenticated ones to the authenticating profile, carrier
        calls (no user) to the public one; with the lab's `media`, audio both ways."""
        target = self.settings.public if calls and calls[0].user is None else self.settings.sip
        return SippRun(self.settings.sipp, target, calls, workdir / name, rate=rate,
                       limit=limit, domain=self.domain, media=self.media)

    def records_to(self, database_url: str) -> None:
        """FreeSWITCH's own call records (mod_cdr_pg_csv) into this database, if shipped."""
        if not self.records:
            return
        text = (SHIPPED.parent / "cdr_pg_csv.conf.xml").read_text()
        self.files.put(RECORDS_CONF, point_records_at(text, database_url), replace=True)
        self._reload_records()

    def hang_up_ours(self) -> int:
        return hang_up_callers(self.esl, self.caller_prefix)

    def close(self) -> None:
        try:
            self.hang_up_ours()
            restore = RECORDS_CONF in {str(p.relative_to(self.settings.conf_dir))
                                       for p in self.files.installed}
            self.files.remove_all()
            if restore:
                self._reload_records()
        finally:
            self.uas.stop()
            self.esl.close()

    def _reload_records(self) -> None:
        out = self.esl.api("reload mod_cdr_pg_csv")
        if "-ERR" in out:
            raise RuntimeError(f"reload mod_cdr_pg_csv: {out.strip()}")


def channels(esl: EslClient) -> list[dict]:
    """`show channels as json` rows (empty list when there are none)."""
    text = esl.api("show channels as json").strip()
    return json.loads(text).get("rows", []) if text.startswith("{") else []


def hang_up_callers(esl: EslClient, caller_prefix: str) -> int:
    """Kill the channels of calls whose caller starts with `caller_prefix` (both legs)."""
    rows = [r for r in channels(esl) if (r.get("cid_num") or "").startswith(caller_prefix)]
    for r in rows:
        esl.api(f"uuid_kill {r['uuid']}")
    return len(rows)
