"""Keeping user work away from the server: who runs it, in which directory, with what environment.

User work is a job attempt's child process and the local Sail servers that run clusters'
SQL (Sail's file reader reads any file its process can). Neither runs as the server:

- Its environment is built by `work_environment`, never inherited: `PATH`, `LANG`, a
  private `HOME` (also its working and temporary directory), `USER`, and the variables the
  caller gives (`SPARK_REMOTE`, the run's variables). No server setting, key or token.
- Each gets a private directory (`Workspace`) under this isolation's root, which others
  may traverse but not list.
- Server running as root (mode `user`): the Sail servers run as the dedicated unprivileged
  user `sailplane-work` (created with `useradd --system` when missing), and each attempt
  as a uid of its own, picked at random from `ATTEMPT_UIDS`, with that user's group and
  no other group. So the work cannot read the data directory (the secrets key, the
  database socket, logs), another attempt's directory, or the server's `/proc` entries;
  processes an attempt leaves behind are killed when it ends.
- Not root, `bwrap` (Debian's `bubblewrap`) works here (mode `bubblewrap`): each piece of
  work runs in a sandbox with its own process and IPC namespaces, the file system
  read-only, and /tmp, the workspaces' root and the data directory empty but for its own
  workspace.
- Otherwise (mode `none`): the work runs as the server's user. The server says so loudly
  at start and `describe()` (the readiness report) says so; see docs/security.md.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import pwd
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

WORK_USER = "sailplane-work"
# Each attempt's own uid when the server runs as root: a range no distribution or systemd
# assigns (above the container ranges, below 2^31).
ATTEMPT_UIDS = range(0x7000_0000, 0x7000_0000 + 2**24)
USER, BUBBLEWRAP, NONE = "user", "bubblewrap", "none"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Workspace:
    """A private directory for one piece of work, and the identity the work runs as."""

    path: Path
    uid: int | None = None  # None: the server's own
    gid: int | None = None
    own_uid: bool = False  # the uid is this workspace's alone (an attempt's)


def work_environment(home: Path, variables: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a piece of user work: built, nothing inherited from the server."""
    return {
        "PATH": os.pathsep.join((str(Path(sys.executable).parent), SYSTEM_PATH)),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(home),
        "USER": WORK_USER,
        **variables,
    }


def ensure_work_user(name: str = WORK_USER) -> pwd.struct_passwd:
    """The dedicated unprivileged user, created (system user, own group, no login) if missing."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    created = subprocess.run(
        [
            *("useradd", "--system", "--user-group", "--no-create-home"),
            *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name),
        ],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(name)  # another process may have created it meanwhile
    except KeyError:
        raise OSError(f"could not create the user {name}: {created.stderr.strip()}") from None


def private_directory(path: Path) -> Path:
    """`path` created if missing (mode 0700), else closed to others: its owner alone reads it,
    its group may at most pass through (the embedded database's user reaches its files)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(stat.S_IMODE(path.stat().st_mode) & 0o710)
    return path


# POSIX access ACLs as the kernel stores them (linux/posix_acl_xattr.h).
_ACL_XATTR = "system.posix_acl_access"
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def _let_group_traverse(directory: Path, gid: int) -> None:
    """Group `gid` may pass through `directory` (not list it): an ACL entry, else `o+x`."""
    mode = directory.stat().st_mode
    if mode & 0o001:
        return
    try:
        try:
            raw = os.getxattr(directory, _ACL_XATTR)
        except OSError as error:
            if error.errno != errno.ENODATA:
                raise
            raw = b""
        entries = {(tag, ident): perm for tag, perm, ident in struct.iter_unpack("<HHI", raw[4:])}
        if not entries:
            entries = {
                (_USER_OBJ, _NO_ID): (mode >> 6) & 7,
                (_GROUP_OBJ, _NO_ID): (mode >> 3) & 7,
                (_OTHER, _NO_ID): mode & 7,
            }
        entries[(_GROUP, gid)] = entries.get((_GROUP, gid), 0) | 1
        entries[(_MASK, _NO_ID)] = functools.reduce(
            int.__or__, (p for (t, _), p in entries.items() if t in (_USER, _GROUP_OBJ, _GROUP))
        )
        os.setxattr(
            directory,
            _ACL_XATTR,
            struct.pack("<I", 2)
            + b"".join(struct.pack("<HHI", t, p, i) for (t, i), p in sorted(entries.items())),
        )
    except OSError:
        directory.chmod(mode | 0o001)


def _reach_installation(gid: int) -> None:
    """The work's group may reach the interpreter, the installed packages and Sailplane's own
    code (an interpreter under a private home directory, say): traverse rights on the
    directories above them, nothing more."""
    places = {Path(sys.executable).resolve().parent, Path(sys.prefix), Path(sys.base_prefix)}
    places |= {Path(p) for p in sys.path if p and Path(p).is_dir()}
    for place in places:
        for directory in place.resolve().parents:
            _let_group_traverse(directory, gid)


def _sandbox_works(bwrap: str) -> bool:
    """Whether bubblewrap can make a sandbox here (it needs unprivileged user namespaces)."""
    probe = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid"]
    try:
        return subprocess.run([*probe, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _uids_mapped(uids: range) -> bool:
    """Whether this process can switch to every uid in `uids` (its user namespace maps them)."""
    try:
        lines = Path("/proc/self/uid_map").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        inside, _, count = (int(v) for v in line.split())
        if inside <= uids.start and uids.stop <= inside + count:
            return True
    return False


class Isolation:
    """How this server keeps user work away from itself (see the module's text)."""

    def __init__(
        self,
        mode: str,
        *,
        message: str,
        user: pwd.struct_passwd | None = None,
        attempt_uids: range | None = None,
        bwrap: str | None = None,
        hidden: Sequence[Path] = (),
    ) -> None:
        self.mode = mode
        self.message = message
        self.user = user
        self.attempt_uids = attempt_uids
        self.bwrap = bwrap
        self.hidden = tuple(hidden)  # what a sandbox hides (the data directory)
        # Workspaces live here: others may traverse it to their own directory, not list it.
        self.root = Path(tempfile.mkdtemp(prefix="sailplane-work-"))
        self.root.chmod(0o711)

    @classmethod
    def detect(cls, hidden: Sequence[Path] = ()) -> Isolation:
        """Root: the dedicated user; else a bubblewrap sandbox hiding `hidden` when `bwrap`
        works here; else none (said loudly)."""
        if os.geteuid() != 0:
            bwrap = shutil.which("bwrap")
            if bwrap is not None and _sandbox_works(bwrap):
                return cls(
                    BUBBLEWRAP,
                    bwrap=bwrap,
                    hidden=hidden,
                    message=(
                        "User work runs in a bubblewrap sandbox: its own process and IPC "
                        "namespaces, the file system read-only, the data directory, /tmp and "
                        "other workspaces hidden."
                    ),
                )
            return cls(
                NONE,
                message=(
                    "User work runs as the server's own user: jobs and the local Sail servers "
                    "can read the data directory (the secrets key, the database) and this "
                    "server's files. Run the server as root (work then runs as the unprivileged "
                    f"user {WORK_USER}), install bubblewrap (`bwrap`), or use the Kubernetes "
                    "executor; see docs/security.md."
                ),
            )
        try:
            user = ensure_work_user()
        except OSError as error:
            return cls(NONE, message=f"User work runs as root: {error}. See docs/security.md.")
        _reach_installation(user.pw_gid)
        uids = ATTEMPT_UIDS if _uids_mapped(ATTEMPT_UIDS) else None
        return cls(
            USER,
            user=user,
            attempt_uids=uids,
            message=(
                f"User work runs as the unprivileged user {WORK_USER}"
                + (
                    ", each job attempt with a uid of its own."
                    if uids
                    else "; job attempts share it (this user namespace maps too few uids)."
                )
            ),
        )

    @property
    def isolated(self) -> bool:
        return self.mode != NONE

    def describe(self) -> dict[str, Any]:
        """What the readiness report says about isolation."""
        return {
            "mode": self.mode,
            "isolated": self.isolated,
            "attemptsSeparated": self.attempt_uids is not None or self.bwrap is not None,
            "message": self.message,
        }

    def warn_if_not_isolated(self) -> None:
        if not self.isolated:
            banner = "!" * 78
            log.error("\n%s\nUSER WORK IS NOT ISOLATED. %s\n%s", banner, self.message, banner)

    # --- workspaces ----------------------------------------------------------------------

    def workspace(self, name: str, *, attempt: bool) -> Workspace:
        """The private directory `name` (created, or kept when it exists) and who works in it:
        a fresh uid of its own for an attempt, the dedicated user for a long-lived server."""
        uid = gid = None
        own = False
        if self.user is not None:
            uid, gid = self.user.pw_uid, self.user.pw_gid
            if attempt and self.attempt_uids is not None:
                uid = random.SystemRandom().choice(self.attempt_uids)
                own = True
        path = self.root / name
        path.mkdir(mode=0o700, exist_ok=True)
        if uid is not None:
            os.chown(path, uid, gid if gid is not None else -1)
        path.chmod(0o700)
        return Workspace(path, uid, gid, own)

    def spawn(
        self,
        argv: Sequence[str],
        workspace: Workspace,
        variables: Mapping[str, str],
        **options: Any,
    ) -> subprocess.Popen[bytes]:
        """Start work in `workspace`, as its identity, with the environment built for it."""
        if workspace.uid is not None:
            options.update(user=workspace.uid, group=workspace.gid, extra_groups=[])
        if self.bwrap is not None:
            argv = self._sandboxed(argv, workspace.path)
        return subprocess.Popen(
            list(argv),
            env=work_environment(workspace.path, variables),
            cwd=workspace.path,
            **options,
        )

    def _sandboxed(self, argv: Sequence[str], workspace: Path) -> list[str]:
        """`argv` in a bubblewrap sandbox: the file system read-only, /tmp, the workspaces'
        root and the hidden paths empty but for its own workspace; its own process table
        (everything in it dies with it) and IPC; the network shared (Spark Connect)."""
        covered = [Path("/tmp"), self.root, *self.hidden, Path("/run/user")]
        hide = [
            p for p in covered if p.exists() and (p == Path("/tmp") or not p.is_relative_to("/tmp"))
        ]
        command = [str(self.bwrap), "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
        command += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for path in hide:
            command += ["--tmpfs", str(path)]
        command += ["--bind", str(workspace), str(workspace), "--chdir", str(workspace), "--"]
        return [*command, *argv]

    def release(self, workspace: Workspace) -> None:
        """The work is over: kill what it left running (its own uid only), remove its directory."""
        if workspace.own_uid:
            for process in psutil.process_iter(["uids"]):
                uids = process.info.get("uids")
                if uids is not None and uids.real == workspace.uid:
                    with contextlib.suppress(psutil.Error):
                        process.kill()
        shutil.rmtree(workspace.path, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
