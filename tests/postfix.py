"""
Postfix, a real MTA for the doctor's SMTP probe: a private instance run as root from a
temporary config directory, with its own queue and log. Its master.cf has smtpd listeners and
what they call (tlsmgr, anvil, postlogd), and no queue manager or delivery agent: it never
delivers a message, and its smtpd refuses every recipient besides.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

from .processes import STARTUP_TIMEOUT, need, running

_SMTPD = re.compile(r" postfix/smtpd\[(\d+)\]: (.*)$")


@dataclass(frozen=True)
class Listener:
    """One smtpd listener and its own settings (``-o`` in master.cf), over main.cf's."""

    address: str
    port: int
    settings: Mapping[str, str]


@dataclass(frozen=True)
class Postfix:
    """A running instance: what its log says about the SMTP sessions it has seen."""

    log: Path
    listeners: Sequence[Listener]

    def port(self, address: str) -> int:
        """The port of the listener on ``address``."""
        return next(listener.port for listener in self.listeners if listener.address == address)

    def _sessions(self) -> list[list[str]]:
        """Each finished session's lines of smtpd's log, connect to disconnect, in order."""
        open_: dict[str, list[str]] = {}
        done: list[list[str]] = []
        try:
            logged = self.log.read_text(errors="replace")
        except FileNotFoundError:  # postlogd creates it with its first line, which may lag
            return done
        for line in logged.splitlines():
            match = _SMTPD.search(line)
            if match is None:
                continue
            pid, text = match.groups()
            if text.startswith("connect from "):
                open_[pid] = []
            if pid in open_:
                open_[pid].append(text)
                if text.startswith("disconnect from "):
                    done.append(open_.pop(pid))
        return done

    def finished(self) -> int:
        """How many sessions smtpd has logged as ended."""
        return len(self._sessions())

    def dialogue(self, number: int) -> list[str]:
        """
        Session ``number`` (from 1, in the order they ended) as smtpd logged it, waiting for it
        to end: ``S: `` what Postfix sent, ``C: `` what it heard, then its disconnect line.
        """
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while len(sessions := self._sessions()) < number:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.log}: no session {number} logged")
            time.sleep(0.02)
        lines = []
        for text in sessions[number - 1]:
            said, _, rest = text.partition(": ")
            if said[:2] in ("> ", "< ") and rest:
                lines.append(("S: " if said[0] == ">" else "C: ") + rest)
            elif text.startswith("disconnect from "):
                lines.append(text)
        return lines


def _option(key: str, value: str) -> str:
    # A value with spaces needs master.cf's "-o { name = value }" form (Postfix 3.0).
    return f" -o {{ {key} = {value} }}" if " " in value else f" -o {key}={value}"


@contextlib.contextmanager
def postfix(
    hostname: str, certificate: trustme.LeafCert, listeners: Sequence[Listener]
) -> Iterator[Postfix]:
    """
    Postfix as ``hostname`` with smtpd on each of ``listeners``, offering STARTTLS with
    ``certificate`` unless a listener's settings say otherwise.
    """
    command = need("postfix", "postfix")
    # Not under pytest's temporary directories, which only root may enter: the daemons open
    # some files as the postfix user (the master's lock in data_directory, for one).
    with tempfile.TemporaryDirectory(prefix="mtasts-postfix-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        with _running(command, tmp, hostname, certificate, listeners) as server:
            yield server


@contextlib.contextmanager
def _running(
    command: str,
    tmp: Path,
    hostname: str,
    certificate: trustme.LeafCert,
    listeners: Sequence[Listener],
) -> Iterator[Postfix]:
    etc, queue, chain = tmp / "etc", tmp / "queue", tmp / "chain.pem"
    for directory in (etc, queue):
        directory.mkdir()
    certificate.private_key_and_cert_chain_pem.write_to_path(str(chain))
    chain.chmod(0o600)  # smtpd reads it as root, before it drops privileges
    main = {
        "compatibility_level": "3.6",
        "queue_directory": str(queue),
        "data_directory": str(tmp / "data"),
        "myhostname": hostname,
        "mydestination": "",
        # Only checked against the host's interfaces: the listeners bind their own addresses.
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "maillog_file": str(tmp / "maillog"),
        "maillog_file_prefixes": str(tmp),
        # Every client's dialogue in the log (debug_peer_level 2 logs each line both ways).
        "debug_peer_list": "127.0.0.0/8",
        "smtpd_peername_lookup": "no",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_chain_files": str(chain),
        "smtpd_relay_restrictions": "reject",
        # The defaults look these up through proxymap, which this instance does not run.
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
    }
    (etc / "main.cf").write_text("".join(f"{key} = {value}\n" for key, value in main.items()))
    services = [
        f"{listener.address}:{listener.port} inet n - n - - smtpd"
        + "".join(_option(key, value) for key, value in listener.settings.items())
        for listener in listeners
    ]
    services += [
        "tlsmgr unix - - n 1000? 1 tlsmgr",
        "anvil unix - - n - 1 anvil",
        "postlog unix-dgram n - n - 1 postlogd",
    ]
    (etc / "master.cf").write_text("\n".join(services) + "\n")
    # Postfix rereads a file modified within the last second or so until it "cools down",
    # pausing 0.3 s each time (util/load_file.c): date them an hour ago.
    for path in (etc / "main.cf", etc / "master.cf"):
        os.utime(path, (time.time() - 3600,) * 2)
    # Creates the queue's directories, owned by the postfix user as the daemons expect.
    # What these daemons use of a queue, as "postfix check" would make it (which takes seconds).
    owner, group = pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postdrop").gr_gid
    for path, mode, gid in [
        (queue / "pid", 0o755, None),
        (queue / "private", 0o700, None),
        (queue / "public", 0o710, group),
        (tmp / "data", 0o700, None),
    ]:
        path.mkdir(mode)
        if path.name != "pid":
            os.chown(path, owner, gid if gid is not None else 0)
    log = tmp / "maillog"
    daemons = subprocess.run(
        [str(Path(command).parent / "postconf"), "-c", str(etc), "-h", "daemon_directory"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    argv = [f"{daemons}/master", "-c", str(etc)]
    first = listeners[0]
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(running(argv, tmp / "master.log", first.address, first.port))
        except RuntimeError as exc:  # the log is deleted with the directory: say it now
            raise RuntimeError(f"{exc}: {log.read_text() if log.exists() else ''}") from None
        server = Postfix(log, listeners)
        server.dialogue(1)  # running()'s own connection, to see it listen
        yield server
