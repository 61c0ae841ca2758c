"""What a sandboxed command sees: the bubblewrap mounts and the environment.

- read-only: ``/usr`` (with Debian's ``/bin`` → ``usr/bin`` links), ``/etc`` less its
  secret files (``shadow``, ``gshadow``, ``ssh`` host keys, ``ssl/private``), and the
  Python installations that run tests — only those directories, never a home as a whole;
- fresh and private: ``/proc`` (own PID namespace), ``/dev``, ``/tmp`` with ``HOME`` in it;
- writable: the project root, and nothing else (the rest of ``/`` is read-only).

The environment starts empty: the server's own variables (which may hold secrets) never
reach a command.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mimiverse.errors import ToolError

SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SECRET_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
SECRET_DIRS = ("/etc/ssl/private", "/etc/ssh")
SANDBOX_HOME = "/tmp/home"
HOSTNAME = "mimiverse-sandbox"


def bwrap_argv(
    bwrap: str,
    root: Path,
    workdir: Path,
    env: dict[str, str],
    *,
    network: bool,
    new_session: bool = True,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``bwrap`` options that isolate a command run in ``workdir`` of project ``root``.

    ``new_session=False`` keeps the caller's terminal as the controlling one (an interactive
    shell in its own pseudo-terminal needs it; see ``pty.py``); ``extra`` options go last.
    """
    session = ["--new-session"] if new_session else []
    args = [bwrap, "--die-with-parent", *session, "--cap-drop", "ALL"]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        args.append("--unshare-net")
    args += ["--hostname", HOSTNAME, "--ro-bind", "/usr", "/usr"]
    for path in SYSTEM_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", "/etc", "/etc"]
    for path in SECRET_FILES:
        if os.path.isfile(path):
            args += ["--ro-bind", "/dev/null", path]
    for path in SECRET_DIRS:
        if os.path.isdir(path):
            args += ["--tmpfs", path]
    # /tmp first: the Python installs (a venv under /tmp, say) must be bound over it.
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    for prefix in python_dirs(root):
        args += ["--ro-bind", str(prefix), str(prefix)]
    args += ["--bind", str(root), str(root)]
    git_dir = root / ".git"
    if git_dir.exists():
        # Read-only: a command could otherwise plant hooks or filter drivers in .git/config
        # that git runs outside the sandbox when the git tools stage or commit.
        args += ["--ro-bind", str(git_dir), str(git_dir)]
    args += ["--remount-ro", "/"]
    args += [*extra, "--chdir", str(workdir), "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--"]


def python_dirs(root: Path) -> list[Path]:
    """Installations of the Python that runs tests: Mimiverse's own and the project venv's.

    Directories under ``/usr`` (already visible) or inside the project (already writable)
    are left out.
    """
    found = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parents[1]}
    with contextlib.suppress(OSError):
        for line in (root / ".venv" / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                found.add(Path(value.strip()).resolve().parent)
    usr = Path("/usr")
    return [
        path
        for path in sorted(found)
        if path.is_dir()
        and path != Path("/")
        and not (path == usr or usr in path.parents)
        and not (path == root or root in path.parents)
    ]


def sandbox_env(root: Path, extra: dict[str, str] | None, home: str) -> dict[str, str]:
    """A fresh environment for a command: known variables plus what the caller passes."""
    path = [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    env = {"HOME": home, "LANG": "C.UTF-8", "TERM": "dumb", "TMPDIR": "/tmp"}
    venv = root / ".venv"
    if (venv / "bin").is_dir():
        path.insert(0, str(venv / "bin"))
        env["VIRTUAL_ENV"] = str(venv)
    env |= {"PATH": ":".join(dict.fromkeys(path)), "PYTHONDONTWRITEBYTECODE": "1"}
    for key, value in (extra or {}).items():
        if not key or "=" in key or "\x00" in key + value:
            raise ToolError(f"invalid environment variable name or value: {key!r}")
        env[key] = value
    return env
