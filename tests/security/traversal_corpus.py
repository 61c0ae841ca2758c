"""The path-traversal corpus, as data, and the arena it runs in.

Every case is a path some entry point (a tool argument, an API field, an MCP resource
URI) could be given, trying to leave the project root. The arena puts the root next to
an ``outside/`` folder holding a canary file, and plants symlinks in the root that point
out. After each attempt ``Arena.check`` asserts the canary is unchanged, nothing appeared
or changed outside the root, and the answer does not contain the canary (or /etc/passwd).

A new entry point (the files API, the terminal) is one more parametrize entry in a test
module: it gets every case here for free.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One way out. ``{outside}`` and ``{root}`` in ``path`` become the arena's folders."""

    id: str
    category: str
    path: str

    def text(self, arena: Arena) -> str:
        """The path with the arena's absolute folders filled in."""
        return self.path.replace("{outside}", str(arena.outside)).replace("{root}", str(arena.root))


def _cases(category: str, *pairs: tuple[str, str]) -> list[Case]:
    return [Case(f"{category}:{name}", category, path) for name, path in pairs]


CASES: tuple[Case, ...] = tuple(
    _cases(
        "dotdot",
        ("up-to-canary", "../outside/secret.txt"),
        ("bare", ".."),
        ("bare-slash", "../"),
        ("deep-etc", "../../../../../../../../etc/passwd"),
        ("down-then-up", "docs/../../outside/secret.txt"),
        ("down-then-up-inside", "docs/../calc.py"),
        ("trailing-file", "calc.py/.."),
        ("trailing-dir", "docs/.."),
        ("trailing-dir-slash", "docs/../"),
        ("dot-games", "./././../outside/secret.txt"),
        ("dot-up", "./../outside/secret.txt"),
        ("dot-middle", "docs/./../../outside/secret.txt"),
        ("triple-dot", ".../outside/secret.txt"),
        ("dotdot-space", ".. /outside/secret.txt"),
        ("filter-bypass", "....//....//outside/secret.txt"),
        ("new-file", "../outside/new.txt"),
    )
    + _cases(
        "backslash",
        ("up", "..\\outside\\secret.txt"),
        ("down-then-up", "docs\\..\\..\\outside\\secret.txt"),
        ("mixed", "..\\/outside/secret.txt"),
        ("deep-etc", "..\\..\\..\\..\\..\\..\\etc\\passwd"),
        ("forward-then-back", "docs/..\\..\\outside/secret.txt"),
    )
    + _cases(
        "url-encoded",
        ("dots", "%2e%2e/outside/secret.txt"),
        ("all", "%2e%2e%2foutside%2fsecret.txt"),
        ("upper", "%2E%2E%2Foutside%2Fsecret.txt"),
        ("slash-only", "..%2foutside%2fsecret.txt"),
        ("backslash", "%2e%2e%5coutside%5csecret.txt"),
        ("mixed-dot", "%2e./outside/secret.txt"),
        ("mixed-dot-2", ".%2e/outside/secret.txt"),
        ("absolute", "%2fetc%2fpasswd"),
        ("down-then-up", "docs%2f..%2f..%2foutside%2fsecret.txt"),
    )
    + _cases(
        "double-encoded",
        ("all", "%252e%252e%252foutside%252fsecret.txt"),
        ("slash-only", "..%252foutside%252fsecret.txt"),
        ("triple", "%25252e%25252e%25252foutside%25252fsecret.txt"),
        ("dots", "%252e%252e/outside/secret.txt"),
        ("backslash", "..%255coutside%255csecret.txt"),
    )
    + _cases(
        "overlong-utf8",
        ("dots", "%c0%ae%c0%ae/outside/secret.txt"),
        ("dots-and-slash", "%c0%ae%c0%ae%c0%afoutside%c0%afsecret.txt"),
        ("slash", "..%c0%afoutside%c0%afsecret.txt"),
        ("three-byte", "%e0%80%ae%e0%80%ae/outside/secret.txt"),
        ("backslash", "..%c1%9coutside%c1%9csecret.txt"),
        ("four-byte", "%f0%80%80%ae%f0%80%80%ae/outside/secret.txt"),
    )
    + _cases(
        "unicode-lookalike",
        ("fullwidth", "．．／outside／secret.txt"),
        ("two-dot-leader", "‥/outside/secret.txt"),
        ("small-full-stop", "﹒﹒/outside/secret.txt"),
        ("division-slash", "..∕outside∕secret.txt"),
        ("fraction-slash", "..⁄outside⁄secret.txt"),
        ("fullwidth-backslash", "．．＼outside＼secret.txt"),
        ("ideographic-stop", "。。/outside/secret.txt"),
        ("one-dot-leader", "\u2024\u2024/outside/secret.txt"),
        ("percent-fullwidth", "%ef%bc%8e%ef%bc%8e%ef%bc%8foutside%ef%bc%8fsecret.txt"),
    )
    + _cases(
        "absolute-posix",
        ("etc-passwd", "/etc/passwd"),
        ("canary", "{outside}/secret.txt"),
        ("new-file", "{outside}/new.txt"),
        ("double-slash", "//etc/passwd"),
        ("root-then-up", "{root}/../outside/secret.txt"),
        ("filesystem-root", "/"),
        ("proc-environ", "/proc/self/environ"),
    )
    + _cases(
        "absolute-windows",
        ("drive", "C:\\Windows\\win.ini"),
        ("drive-forward", "c:/windows/win.ini"),
        ("drive-relative", "C:..\\outside\\secret.txt"),
        ("root-backslash", "\\etc\\passwd"),
    )
    + _cases(
        "unc",
        ("share", "\\\\server\\share\\secret.txt"),
        ("device", "\\\\?\\C:\\secret.txt"),
        ("forward", "//server/share/secret.txt"),
    )
    + _cases(
        "nul-control",
        ("nul-end", "calc.py\x00"),
        ("nul-middle", "calc.py\x00../../outside/secret.txt"),
        ("nul-extension", "../outside/secret.txt\x00.py"),
        ("encoded-nul", "calc.py%00.png"),
        ("newline", "docs\n/../outside/secret.txt"),
        ("carriage-return", "calc\r.py"),
        ("escape", "calc\x1b[2J.py"),
        ("bidi-override", "\u202etxt.py"),
    )
    + _cases(
        "home",
        ("tilde", "~"),
        ("tilde-ssh", "~/.ssh/id_rsa"),
        ("tilde-user", "~root/.bashrc"),
        ("encoded-tilde", "%7e/.ssh/id_rsa"),
    )
    + _cases(
        "symlink",
        ("dir-absolute", "link_dir/secret.txt"),
        ("dir-itself", "link_dir"),
        ("dir-relative", "link_rel/secret.txt"),
        ("file", "link_file"),
        ("dangling", "dangling"),
        ("new-file-through-dir", "link_dir/new.txt"),
        ("nested", "nested/up/secret.txt"),
        ("nested-dir", "nested/up"),
        ("deep-in-outside", "link_dir/sub/deeper.txt"),
        ("loop", "loop_a"),
        ("loop-below", "loop_a/x.txt"),
        ("self-loop", "self_loop"),
    )
)

ETC_PASSWD = "root:x:0:0"
"""A line /etc/passwd has: a read of it must never show up in an answer."""

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


class Arena:
    """``base/project`` (the root, with symlinks planted in it) next to ``base/outside``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "project"
        self.outside = base / "outside"
        self.canary = f"CANARY-{uuid.uuid4().hex}"
        self._build()
        self.before = self.snapshot()

    def _build(self) -> None:
        (self.outside / "sub").mkdir(parents=True)
        (self.outside / "secret.txt").write_text(self.canary + "\n")
        (self.outside / "sub" / "deeper.txt").write_text(self.canary + " deeper\n")
        root = self.root
        (root / "docs").mkdir(parents=True)
        (root / "tests").mkdir()
        (root / "nested" / "deeper").mkdir(parents=True)
        (root / "calc.py").write_text(CALC)
        (root / "tests" / "test_calc.py").write_text(TEST_CALC)
        (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
        (root / "docs" / "résumé.md").write_text("# Résumé\n")
        (root / "数据.txt").write_text("数据\n")
        (root / "100%.txt").write_text("percent\n")
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        subprocess.run([*git, "add", "-A"], cwd=root, check=True)
        subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
        # Planted after the commit: git keeps them out of the index, the disk has them.
        (root / "link_dir").symlink_to(self.outside, target_is_directory=True)
        (root / "link_rel").symlink_to(Path("..") / "outside", target_is_directory=True)
        (root / "link_file").symlink_to(self.outside / "secret.txt")
        (root / "dangling").symlink_to(self.outside / "new.txt")
        (root / "nested" / "up").symlink_to(Path("../..") / "outside")
        (root / "loop_a").symlink_to("loop_b")
        (root / "loop_b").symlink_to("loop_a")
        (root / "self_loop").symlink_to("self_loop")

    def snapshot(self) -> dict[str, str]:
        """Everything under ``base`` but the root: path → content, link target or 'dir'."""
        found: dict[str, str] = {}
        for folder, dirs, names in os.walk(self.base):
            here = Path(folder)
            if here == self.root:
                dirs.clear()
                continue
            for name in [*dirs, *names]:
                path = here / name
                rel = str(path.relative_to(self.base))
                if path == self.root:
                    continue
                if path.is_symlink():
                    found[rel] = f"link:{os.readlink(path)}"
                elif path.is_dir():
                    found[rel] = f"dir:{path.stat().st_mode:o}"
                else:
                    info = path.stat()
                    found[rel] = f"{info.st_mode:o}:{info.st_mtime_ns}:{path.read_text()}"
        return found

    def check(self, case: Case, *answers: str, allowed: str = "") -> list[str]:
        """What went wrong for ``case`` (empty when nothing did); ``allowed``: a folder
        (relative to ``base``) where changes are expected."""
        problems = []
        now = self.snapshot()
        changed = {k for k in now.keys() | self.before.keys() if now.get(k) != self.before.get(k)}
        unexpected = sorted(k for k in changed if not (allowed and k.startswith(allowed)))
        if unexpected:
            problems.append(f"{case.id}: changed outside the root: {unexpected[:5]}")
        for answer in answers:
            if self.canary in answer or ETC_PASSWD in answer:
                problems.append(f"{case.id}: the answer shows a file from outside: {answer!r}")
        return problems

    def unchanged_inside(self) -> bool:
        """Whether the project's own files are as built (no refused write landed inside)."""
        names = {name for _, _, files in os.walk(self.root) for name in files}
        return (self.root / "calc.py").read_text() == CALC and not names & PLANTED


PLANTED = frozenset({"new.txt", "moved.txt", "pwned.txt"})
"""Names the write attempts use: none may appear anywhere."""
