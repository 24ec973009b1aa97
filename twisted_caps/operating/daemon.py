# -*- test-case-name: tests.test_daemon -*-
"""
The service C{twistd caps} and C{twist caps} run: the serving service (one
process, or the supervisor of C{--workers}), with what a host's operator
needs around it: signals (L{twisted_caps.operating.signals}), a log file that
logrotate can move (L{twisted_caps.serving.logs.ReopenableLogFile}) and a pidfile
that is removed at exit.

It reads the options of the command that runs it (C{usage.Options.parent}
of the plugin's options: twistd's C{--logfile}, C{--pidfile}, C{--uid},
C{--nodaemon}...), since twistd gives a plugin nothing else; under C{twist}
those options do not exist and only the signals apply.
"""

import os
import pwd
import stat
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import MultiService
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized

from twisted_caps.operating.signals import RELOAD, REOPEN_LOGS, STATUS, OperatorSignals
from twisted_caps.operating.supervisor import WorkersService
from twisted_caps.serving.logs import ReopenableLogFile, file_observer, text_observer
from twisted_caps.serving.service import CapsService

#: The pidfile twistd writes when none is named.
DEFAULT_PIDFILE = "twistd.pid"
#: The log file a daemonized twistd writes when none is named.
DEFAULT_LOGFILE = "twistd.log"


class PidfileError(SystemExit, Exception):
    """
    The host's settings would break a promise (a pidfile that could not be
    removed); the message is the one line users see. Both bases for the
    reasons given in L{twisted_caps.serving.service.ListenError}.
    """


@dataclass(frozen=True)
class HostSettings:
    """What the command running the service was told about the host."""

    #: The log file to write and reopen, or None when another observer logs.
    log_path: str | None = None
    #: The pidfile twistd writes, or "" for none.
    pidfile: str = ""
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def from_command(cls, options: MutableMapping[str, Any] | None) -> "HostSettings":
        """
        Read twistd's options, and make the two changes caps makes to them,
        here and nowhere else (C{twist}'s options have no pidfile and log
        elsewhere: they are left alone). The subcommand's options are parsed
        before twistd reads its own, so a change here is the same as the
        user's typing it:

          - In the foreground (C{twistd -n}), twistd's default pidfile is
            dropped: a foreground server needs none, and its C{twistd.pid}
            in the current folder would stop a second server started from
            the same folder.
          - Logging to standard output with twistd's own observer (C{-n}
            without C{--logfile}, or C{--logfile -}), the observer becomes
            L{twisted_caps.serving.logs.text_observer}, which writes in
            batches; C{--logger}, C{--syslog} and a log file are twistd's.
        """
        if options is None or "pidfile" not in options:
            return cls()
        nodaemon = bool(options.get("nodaemon"))
        # Read before twistd makes it absolute; after, where twistd has.
        if nodaemon and options["pidfile"] in (DEFAULT_PIDFILE, os.path.abspath(DEFAULT_PIDFILE)):
            options["pidfile"] = ""
        chosen = (options.get("logger"), bool(options.get("syslog")))
        # A daemon given --logfile - is twistd's to refuse, in one line.
        if nodaemon and chosen == (None, False) and (options.get("logfile") or "-") == "-":
            options["logger"] = f"{text_observer.__module__}.{text_observer.__name__}"
        uid, gid = options.get("uid"), options.get("gid")
        if uid is not None and gid is None:
            gid = pwd.getpwuid(uid).pw_gid
        pidfile = options["pidfile"]
        return cls(_twistd_log_path(options), os.path.abspath(pidfile) if pidfile else "", uid, gid)


def _twistd_log_path(options: Mapping[str, Any]) -> str | None:
    """
    The file twistd would log to through its rotating C{LogFile}, the same
    choice as twistd's own (C{UnixAppLogger}); None for an observer of the
    operator's (C{--logger}), syslog, or standard output.
    """
    logfile = options.get("logfile") or ""
    if options.get("logger") or options.get("syslog") or logfile == "-":
        return None
    if options.get("nodaemon") and not logfile:
        return None
    return os.path.abspath(logfile or DEFAULT_LOGFILE)


class CapsDaemon(MultiService):
    """
    Run C{serving} as an operator expects: SIGHUP reloads, SIGUSR1 reopens
    the log file, SIGUSR2 logs a status line; the log file is one file
    reopened by name; the pidfile can be removed by the user the service
    ends as.
    """

    log = Logger()

    def __init__(
        self, serving: CapsService | WorkersService, reactor: Any, host: HostSettings
    ) -> None:
        super().__init__()
        self.serving = serving
        serving.setServiceParent(self)
        self.host = host
        self._reactor = reactor
        self.log_file: ReopenableLogFile | None = None
        self.signals = OperatorSignals(
            reactor, {RELOAD: self.reload, REOPEN_LOGS: self.reopen_logs, STATUS: self.status}
        )

    def setServiceParent(self, parent: Any) -> None:
        """
        Join twistd's application and give it the log observer: twistd
        uses an application's C{ILogObserver} instead of its own log file.
        A log file that cannot be opened ends start-up with one line.
        """
        super().setServiceParent(parent)
        if self.host.log_path is None or not isinstance(parent, Componentized):
            return
        if parent.getComponent(ILogObserver) is None:
            try:
                self.log_file = ReopenableLogFile(self.host.log_path)
            except OSError as error:
                reason = error.strerror or str(error)
                raise SystemExit(f"caps: --logfile {self.host.log_path}: {reason}") from None
            parent.setComponent(ILogObserver, file_observer(self.log_file, self._reactor))

    def privilegedStartService(self) -> None:
        self._hand_over_pidfile()
        super().privilegedStartService()

    def _hand_over_pidfile(self) -> None:
        """
        Before C{--uid} takes effect: give the pidfile to that user, and
        refuse to start if the user could not remove it from its folder at
        exit (twistd would leave it behind).
        """
        pidfile, uid, gid = self.host.pidfile, self.host.uid, self.host.gid
        if not pidfile or uid is None or uid == os.geteuid() or not os.path.exists(pidfile):
            return
        # Never through a symbolic link: that would hand its target to the user.
        os.chown(pidfile, uid, -1 if gid is None else gid, follow_symlinks=False)
        folder = os.path.dirname(pidfile)
        if not _may_remove_from(folder, uid, gid):
            user = _user_name(uid)
            raise PidfileError(
                f"caps: --pidfile {pidfile}: --uid {user} could not remove it at exit"
                f" (no write permission on {folder}); use a folder that user may write"
                " to, e.g. /run/caps/caps.pid (systemd: RuntimeDirectory=caps)"
            )

    def reload(self) -> None:
        """SIGHUP: reopen the log file, then reload the serving service."""
        self.log.info("caps: reloading (SIGHUP)")
        self._reopen_log_file()
        self.serving.reload()
        if isinstance(self.serving, CapsService):
            # Workers are replaced one at a time; the supervisor says when it is done.
            self.log.info("caps: reload done")

    def reopen_logs(self) -> None:
        """SIGUSR1: continue in a log file opened anew, after a rotation moved it."""
        if self.log_file is None:
            self.log.info("caps: no log file to reopen (SIGUSR1): logging to a stream or a logger")
            return
        self._reopen_log_file()

    def _reopen_log_file(self) -> None:
        if self.log_file is None:
            return
        try:
            self.log_file.reopen()
        except OSError as error:
            self.log.warn(
                "caps: could not reopen the log file {path}: {error}; still writing to the old one",
                path=self.log_file.path,
                error=error.strerror or error,
            )
            return
        self.log.info("caps: log file reopened: {path}", path=self.log_file.path)

    def status(self) -> None:
        """SIGUSR2: one line saying what the service is doing, in its own words."""
        self.log.info(
            "caps: status: pid {pid}, {status}", pid=os.getpid(), status=self.serving.status()
        )


def _may_remove_from(folder: str, uid: int, gid: int | None) -> bool:
    """Whether user C{uid} could unlink a file it owns from C{folder}."""
    if uid == 0:
        return True
    info = os.stat(folder)
    mode = info.st_mode
    if info.st_uid == uid:
        return bool(mode & stat.S_IWUSR and mode & stat.S_IXUSR)
    if info.st_gid in _groups_of(uid, gid):
        return bool(mode & stat.S_IWGRP and mode & stat.S_IXGRP)
    return bool(mode & stat.S_IWOTH and mode & stat.S_IXOTH)


def _groups_of(uid: int, gid: int | None) -> set[int]:
    """The groups a process of C{uid} has after twistd's switch (which calls initgroups)."""
    groups = {gid} if gid is not None else set()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return groups
    return groups | set(os.getgrouplist(name, gid if gid is not None else -1))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
