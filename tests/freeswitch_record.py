"""Record what a real FreeSWITCH says on the decision socket (the `socket` application's
outbound connection), byte for byte, into fssim/captures/outbound/.

Run by hand against the real-switch tier's switch (the same environment variables,
tests/freeswitch_lab.py); the tier's dialplan and users are installed for the run and
removed after it:

    RATER_TEST_FREESWITCH=127.0.0.1:8021 RATER_TEST_FREESWITCH_PASSWORD=... \\
    RATER_TEST_FREESWITCH_CONF=<conf dir> RATER_TEST_SIPP=<sipp> \\
        .venv/bin/python -m tests.freeswitch_record [--out fssim/captures/outbound]

Four sipp calls through the shipped dialplan, each answered on its connection differently
(what the daemon does, written the way rater.esl.commands writes it):

    outbound_admit    connect; multiset + transfer + exit in one write: the call is bridged
    outbound_refuse   connect; hangup CALL_REJECTED + exit
    outbound_release  connect; exit alone: the dialplan goes on and parks the call
    outbound_gone     connect; the caller's channel is killed before any answer
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote

from rater.esl import commands
from tests.freeswitch_lab import Lab, LabSettings, hang_up_callers, wait_until
from tests.freeswitch_sipp import Call

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "2100000001"
KINDS = {"447700900101": "admit", "447700900102": "refuse", "447700900103": "release",
         "447700900104": "gone"}


class Recorder:
    """The listening socket: each connection is answered by the script its destination
    names, and every byte both ways is kept."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.sessions: dict[str, tuple[bytes, bytes]] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        got, sent = bytearray(), bytearray()

        def send(data: bytes) -> None:
            sent.extend(data)
            with contextlib.suppress(OSError):
                conn.sendall(data)

        def read_until(marker: bytes, timeout: float = 5.0) -> None:
            conn.settimeout(timeout)
            while marker not in got:
                try:
                    data = conn.recv(65536)
                except (TimeoutError, OSError):
                    return
                if not data:
                    return
                got.extend(data)

        send(commands.connect())
        read_until(b"\n\n")
        head = got.decode("utf-8", "replace")
        uuid = _header(head, "Unique-ID")
        kind = KINDS.get(_header(head, "variable_rater_destination"), "unknown")
        if kind == "admit":
            send(commands.execute("multiset", commands.multiset_arg({
                "rater_max_seconds": "600", "rater_account": ACCOUNT,
                "execute_on_answer": "sched_hangup +601 ALLOTTED_TIMEOUT"}))
                 + commands.execute("transfer", "447700900101 XML rated") + commands.exit())
        elif kind == "refuse":
            send(commands.execute("hangup", "CALL_REJECTED") + commands.exit())
        elif kind == "release":
            send(commands.exit())
        elif kind == "gone":
            self.lab.esl.api(f"uuid_kill {uuid} NORMAL_CLEARING")
            time.sleep(0.5)
            send(commands.execute("hangup", "CALL_REJECTED") + commands.exit())
        read_until(b"See you at ClueCon", timeout=3.0)
        read_until(b"\x00", timeout=1.0)  # whatever else comes, until the close
        conn.close()
        self.sessions[kind] = (bytes(got), bytes(sent))


def _header(text: str, name: str) -> str:
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith(f"{name}: "):
            return unquote(line[len(name) + 2:])
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "fssim" / "captures" / "outbound")
    args = parser.parse_args()
    settings = LabSettings.from_env()
    if isinstance(settings, str):
        raise SystemExit(settings)
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(settings, Path(tmp), [ACCOUNT])
        try:
            recorder = Recorder(lab)
            lab.use_decision_socket(recorder.address)
            for n, destination in enumerate(KINDS):
                run = lab.place([Call(lab.caller(n), destination, 1.0, lab.users[ACCOUNT])],
                                Path(tmp), f"sipp{n}")
                if KINDS[destination] == "release":
                    time.sleep(1.5)  # parked now: take it away
                    hang_up_callers(lab.esl, lab.caller_prefix)
                run.wait(30)
            wait_until(lambda: len(recorder.sessions) == len(KINDS), 10, "all four sessions")
        finally:
            lab.close()
    args.out.mkdir(parents=True, exist_ok=True)
    sums = []
    for kind, (got, sent) in sorted(recorder.sessions.items()):
        for suffix, data in (("in", got), ("out", sent)):
            name = f"outbound_{kind}.raw.{suffix}"
            (args.out / name).write_bytes(data)
            sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}")
            print(f"{name}: {len(data)} bytes")
    (args.out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
