"""sipp for the real-switch tier: the far end (a UAS) and the callers (a UAC per run, one
injection line per call, with the scenarios of tests/freeswitch/), and what sipp saw."""

from __future__ import annotations

import dataclasses
import math
import random
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.freeswitch_lab import SipUser

DATA = Path(__file__).resolve().parent / "freeswitch"
# sipp's media ports stay out of the lab switch's RTP range (16384-32000)
ECHO_PORTS = (34000, 38000)
STREAM_PORTS = ("40000", "60000")
# one second of PCMU audio that is not silence (8000 bytes), looped by sipp's rtp_stream
TONE = bytes(0x80 | (0x40 + round(0x3F * math.sin(2 * math.pi * 440 * i / 8000)))
             for i in range(8000))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Uas:
    """sipp's built-in UAS on a free loopback port: the far end every bridge goes to.
    With `media`, it echoes every RTP packet it receives back to its sender (-rtp_echo),
    so a call's audio crosses the switch both ways."""

    def __init__(self, sipp: str, workdir: Path, *, media: bool = False) -> None:
        self.port = free_udp_port()
        self.address = f"127.0.0.1:{self.port}"
        log = open(workdir / "uas.out", "wb")  # noqa: SIM115 - the child's
        echo = (["-rtp_echo", "-mp", str(random.randrange(*ECHO_PORTS, 4))] if media else [])
        self.proc = subprocess.Popen(
            [sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(self.port), "-nostdin", *echo,
             "-trace_err", "-error_file", str(workdir / "uas_errors.log")],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"sipp UAS exited at once: {(workdir / 'uas.out').read_text()}")

    def stop(self) -> None:
        end_process(self.proc)


@dataclasses.dataclass(frozen=True)
class Call:
    """One call to place: `user` None means an unauthenticated carrier call (a DID)."""

    caller: str
    destination: str
    hold: float
    user: SipUser | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What sipp saw of one call (times on this machine's clock, epoch seconds)."""

    caller: str
    call_id: str
    answered: bool
    status: int | None = None        # SIP code of a refusal
    cause: str | None = None         # Reason text= of the refusal or of the switch's BYE
    answered_at: float = 0.0
    ended_at: float = 0.0            # 0.0: sipp saw no end (it timed the call out)
    ended_by: str = ""               # "caller" or "switch"

    @property
    def duration(self) -> float:
        return self.ended_at - self.answered_at


_REASON_TEXT = re.compile(r'text="([^"]*)"')


def parse_outcomes(log_text: str) -> dict[str, Outcome]:
    """Caller -> Outcome from the scenarios' -trace_logs lines (tests/freeswitch/uac_*.xml)."""
    out = {}
    for line in log_text.splitlines():
        kind, _, rest = line.partition(";")
        if kind == "answered":
            caller, cid, a_s, a_us, e_s, e_us, by, reason = rest.split(";", 7)
            m = _REASON_TEXT.search(reason)
            if not a_s:   # the switch's BYE came before sipp saw a 200 (its 200 was lost)
                out[caller] = Outcome(caller, cid, False, None, m[1] if m else None,
                                      ended_by=by)
                continue
            # no end time: sipp gave up on the call (a timeout under overload), no BYE seen
            ended = float(e_s) + float(e_us) / 1e6 if e_s else 0.0
            out[caller] = Outcome(caller, cid, True, None, m[1] if m else None,
                                  float(a_s) + float(a_us) / 1e6, ended, by)
        elif kind == "refused":
            caller, cid, status, reason = rest.split(";", 3)
            m = _REASON_TEXT.search(reason)
            out[caller] = Outcome(caller, cid, False, int(status.split()[-1]),
                                  m[1] if m else None)
    return out


def with_media(scenario: str, tone: str) -> str:
    """The caller's scenario streaming `tone` (a PCMU file, looped) from the answer to the
    end of the call: its SDP offers sipp's rtp_stream port. The stream starts in the 200's
    action, so no message is added and the scenario's [branch-N] references still hold."""
    answered = '<gettimeofday assign_to="ans_s,ans_us"/>'
    if scenario.count(answered) != 1 or "[media_port]" not in scenario:
        raise ValueError("not a caller scenario of tests/freeswitch/ (no answer action or SDP)")
    return (scenario.replace("m=audio [media_port]", "m=audio [rtpstream_audio_port]")
            .replace(answered, f'{answered}\n      <exec rtp_stream="{tone},-1,0,PCMU/8000"/>'))


class SippRun:
    """sipp placing `calls` in order at `rate` calls/s to `target` (one injection line per
    call), its files in `workdir`; with `media`, each answered call streams audio."""

    def __init__(self, sipp: str, target: tuple[str, int], calls: list[Call], workdir: Path,
                 *, rate: float = 10, limit: int = 500, domain: str = "127.0.0.1",
                 media: bool = False) -> None:
        if not calls:
            raise ValueError("no calls")
        carrier = calls[0].user is None
        if any((c.user is None) != carrier for c in calls):
            raise ValueError("one run places either authenticated or carrier calls")
        self.calls = calls
        self.dir = workdir
        self.dir.mkdir(parents=True)
        lines = ["SEQUENTIAL"]
        for c in calls:
            auth = "-;-" if c.user is None else (
                f"{c.user.user_id};[authentication username={c.user.user_id} "
                f"password={c.user.password}]")
            lines.append(f"{auth};{c.destination};{c.caller};{int(c.hold * 1000)};{domain}")
        (self.dir / "calls.csv").write_text("\n".join(lines) + "\n")
        scenario = source = DATA / ("uac_did.xml" if carrier else "uac_auth.xml")
        streams: list[str] = []
        if media:   # the scenario made to stream, beside the run's other files
            (self.dir / "tone.pcmu").write_bytes(TONE)
            scenario = self.dir / source.name
            scenario.write_text(with_media(source.read_text(), "tone.pcmu"))
            streams = ["-min_rtp_port", STREAM_PORTS[0], "-max_rtp_port", STREAM_PORTS[1]]
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sipp, "-sf", str(scenario), "-inf", "calls.csv", *streams,
             "-i", "127.0.0.1", "-p", str(free_udp_port()), "-m", str(len(calls)),
             "-r", str(rate), "-l", str(limit), "-nostdin", "-recv_timeout", "120s",
             "-trace_logs", "-log_file", "outcomes.log", "-trace_err", "-error_file",
             "errors.log", "-trace_rtt", "-rtt_freq", "1", f"{target[0]}:{target[1]}"],
            stdout=open(self.dir / "sipp.out", "wb"),  # noqa: SIM115 - the child's
            stderr=subprocess.STDOUT, cwd=self.dir)

    def wait(self, timeout: float) -> dict[str, Outcome]:
        """Outcomes by caller once sipp is done (a call missing from them failed in sipp:
        see errors.log); sipp is killed after `timeout` s."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            end_process(self.proc)
            raise TimeoutError(f"sipp still running after {timeout:.0f} s ({self.dir})") from None
        except BaseException:   # stopped while waiting (Ctrl-C, SIGTERM): no call goes on
            end_process(self.proc)
            raise
        log = self.dir / "outcomes.log"
        return parse_outcomes(log.read_text() if log.exists() else "")

    def answered_so_far(self) -> int:
        """Calls answered so far (sipp writes an INVITE response time at each 200)."""
        return sum(max(0, len(p.read_text().splitlines()) - 1)
                   for p in self.dir.glob("*_rtt.csv"))

    def invite_response_ms(self) -> list[float]:
        """INVITE (authenticated one) -> 200 times of answered calls, ms."""
        out = []
        for p in self.dir.glob("*_rtt.csv"):
            for line in p.read_text().splitlines()[1:]:
                parts = line.split(";")
                if len(parts) >= 3 and parts[2] == "invite":
                    out.append(float(parts[1]))
        return out

    def errors(self, limit: int = 2000) -> str:
        p = self.dir / "errors.log"
        return p.read_text()[-limit:] if p.exists() else ""


def end_process(proc: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL after `timeout` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
