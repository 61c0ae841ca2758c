"""Workspace.resolve and check_relative: what stays inside, what is refused and why;
and the open-time checks in workspace/files.py that close the gap after resolve."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimiverse.errors import NotFound, PathOutsideWorkspace
from mimiverse.workspace import files
from mimiverse.workspace.paths import (
    _LOOKALIKES,
    RELATIVE_PATH_PATTERN,
    Workspace,
    check_documented,
    check_relative,
)
from tests.security.traversal_corpus import CASES, Arena, Case


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    return Arena(tmp_path / "arena")


@pytest.fixture(scope="module")
def shared_arena(tmp_path_factory: pytest.TempPathFactory) -> Arena:
    """One arena for the read-only corpus checks."""
    return Arena(tmp_path_factory.mktemp("paths") / "arena")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_resolve_refuses_the_corpus(shared_arena: Arena, case: Case) -> None:
    arena = shared_arena
    workspace = Workspace(arena.root)
    path = case.text(arena)
    with pytest.raises(PathOutsideWorkspace) as refused:
        workspace.resolve(path)
    message = refused.value.message
    assert "relative to the project root" in message and refused.value.status == 400
    assert str(arena.base) not in message.replace(repr(path), "")  # no server paths told
    assert not arena.check(case)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("docs/résumé.md", "docs/résumé.md"),
        ("数据.txt", "数据.txt"),
        ("100%.txt", "100%.txt"),  # a '%' that decodes to nothing dangerous
        ("%41.txt", "%41.txt"),  # decodes to 'A.txt': harmless, the name is used as given
        ("ａｂｃ.txt", "ａｂｃ.txt"),  # fullwidth letters normalise to 'abc.txt': harmless
        ("./calc.py", "calc.py"),
        ("docs/", "docs"),
        ("docs\\résumé.md", "docs/résumé.md"),  # backslashes are folder separators
        ("  calc.py\n", "calc.py"),  # surrounding whitespace from a model is dropped
        (".", "."),
        ("a~b/~c.txt", "a~b/~c.txt"),  # '~' only matters first
        ("notes..txt", "notes..txt"),  # '..' inside a name is not a component
        ("..hidden", "..hidden"),
    ],
)
def test_plain_and_unicode_names_stay_usable(arena: Arena, path: str, expected: str) -> None:
    workspace = Workspace(arena.root)
    assert workspace.relative(workspace.resolve(path)) == expected


def test_an_absolute_path_inside_the_root_is_made_relative(arena: Arena) -> None:
    workspace = Workspace(arena.root)
    assert workspace.resolve(str(arena.root / "calc.py")) == arena.root / "calc.py"
    assert workspace.resolve(str(arena.root)) == arena.root
    with pytest.raises(PathOutsideWorkspace, match="goes up a folder"):
        workspace.resolve(f"{arena.root}/docs/../calc.py")
    with pytest.raises(PathOutsideWorkspace, match="is absolute"):
        workspace.resolve(f"{arena.root}-other/x")  # a sibling sharing the name's prefix


def test_symlinks_inside_the_root_are_followed(arena: Arena) -> None:
    (arena.root / "alias.py").symlink_to("calc.py")
    (arena.root / "docs_link").symlink_to("docs", target_is_directory=True)
    workspace = Workspace(arena.root)
    assert workspace.resolve("alias.py") == arena.root / "calc.py"
    assert workspace.resolve("docs_link/résumé.md") == arena.root / "docs" / "résumé.md"


def test_reasons_name_the_trick(arena: Arena) -> None:
    workspace = Workspace(arena.root)
    reasons = {
        "../x": "goes up a folder with '..'",
        "%2e%2e/x": "is percent-encoded: decoded, it goes up",
        "%252e%252e/x": "is percent-encoded: decoded, it goes up",
        "%c0%ae%c0%ae/x": "overlong UTF-8",
        "．．/x": "uses look-alike characters",
        "~/x": "starts with '~'",
        "/etc/passwd": "is absolute",
        "C:\\x": "Windows drive",
        "x\x00": "NUL byte",
        "x\x07": "control character U+0007",
        "link_file": "resolves outside the project through a symlink",
        "loop_a": "symlink loop",
        "": "empty path",
    }
    for path, reason in reasons.items():
        with pytest.raises(PathOutsideWorkspace, match=re.escape(reason)):
            workspace.resolve(path)


def test_a_missing_path_is_not_found_only_when_it_must_exist(arena: Arena) -> None:
    workspace = Workspace(arena.root)
    assert workspace.resolve("new/file.py") == arena.root / "new" / "file.py"
    with pytest.raises(NotFound, match=r"no file or directory 'new/file\.py'"):
        workspace.resolve("new/file.py", must_exist=True)


def test_check_relative_is_the_text_rule_for_globs() -> None:
    assert check_relative("src/**/*.py") == "src/**/*.py"
    assert check_relative("src\\*.py") == "src/*.py"
    for bad in ("../*", "/etc/*", "%2e%2e/*", "‥/*", "~/*"):
        with pytest.raises(PathOutsideWorkspace):
            check_relative(bad)


# --- open time: a link planted after resolve is not followed -------------------------------


def test_a_write_through_a_folder_swapped_for_a_link_is_refused(arena: Arena) -> None:
    workspace = Workspace(arena.root)
    target = workspace.resolve("docs/new.txt")  # checked while docs/ is a real folder
    (arena.root / "docs").rename(arena.root / "docs.old")
    (arena.root / "docs").symlink_to(arena.outside, target_is_directory=True)
    with pytest.raises(PathOutsideWorkspace, match="is now a symlink"):
        files.atomic_write(target, b"pwned", beneath=workspace.root)
    with pytest.raises(PathOutsideWorkspace):
        files.read_bytes(arena.root / "docs" / "secret.txt", beneath=workspace.root)
    with pytest.raises(PathOutsideWorkspace):
        files.remove(arena.root / "docs" / "secret.txt", beneath=workspace.root)
    assert not arena.check(CASES[0])


def test_a_read_of_a_file_swapped_for_a_link_is_refused(arena: Arena) -> None:
    workspace = Workspace(arena.root)
    target = workspace.resolve("calc.py")
    target.unlink()
    target.symlink_to(arena.outside / "secret.txt")
    with pytest.raises(PathOutsideWorkspace, match="is now a symlink"):
        files.read_bytes(target, beneath=workspace.root)


def test_a_write_replaces_a_final_link_instead_of_following_it(arena: Arena) -> None:
    link = arena.root / "link_file"
    files.atomic_write(link, b"mine\n", beneath=arena.root)
    assert not link.is_symlink() and link.read_text() == "mine\n"
    assert (link.stat().st_mode & 0o777) == 0o644  # not the outside file's bits
    assert not arena.check(CASES[0])


def test_atomic_write_makes_folders_and_keeps_modes(arena: Arena) -> None:
    script = arena.root / "run.sh"
    script.write_text("old\n")
    script.chmod(0o755)
    files.atomic_write(script, b"new\n", beneath=arena.root)
    assert script.read_text() == "new\n" and script.stat().st_mode & 0o777 == 0o755
    deep = arena.root / "a" / "b" / "c.txt"
    files.atomic_write(deep, b"x", mode=0o600, beneath=arena.root)
    assert deep.read_bytes() == b"x" and deep.stat().st_mode & 0o777 == 0o600
    files.atomic_write(arena.base / "plain.txt", b"y")  # no ``beneath``: as before
    assert (arena.base / "plain.txt").read_bytes() == b"y"
    assert not [n for n in os.listdir(arena.root / "a" / "b") if n.endswith(".mimi-tmp")]
    with pytest.raises(PathOutsideWorkspace, match="is not inside"):
        files.atomic_write(arena.outside / "x.txt", b"x", beneath=arena.root)


# --- the documented pattern: a schema can promise it, check_relative keeps the promise -----


def _no_surrogates(text: str) -> bool:
    """JSON sent as UTF-8 cannot hold a lone surrogate (and the pattern does not list them)."""
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_the_pattern_leaves_out_every_look_alike_character() -> None:
    """Recomputes the pattern's character list: fails when Unicode (or the rules) grow."""
    documented = re.compile(RELATIVE_PATH_PATTERN)
    missing = []
    for point in range(0x80, 0x10000):
        char = chr(point)
        if 0xD800 <= point <= 0xDFFF:
            continue
        normal = unicodedata.normalize("NFKC", char).translate(_LOOKALIKES)
        if any(c in normal for c in "./\\~%: ") and documented.fullmatch(f"a{char}"):
            missing.append(f"U+{point:04X}")
    assert not missing


@settings(max_examples=200, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.from_regex(RELATIVE_PATH_PATTERN, fullmatch=True).filter(_no_surrogates))
def test_every_text_the_pattern_allows_is_accepted(text: str) -> None:
    assert check_documented(text) == text


def test_the_pattern_compiles_for_a_rust_validator() -> None:
    """Schemathesis (and other clients) read it with jsonschema-rs: it must compile there."""
    validator = jsonschema_rs.validator_for({"type": "string", "pattern": RELATIVE_PATH_PATTERN})
    assert validator.is_valid("src/**/*.py") and validator.is_valid("docs/résumé.md")
    assert not any(validator.is_valid(t) for t in ("../x", "/x", "~/x", "a%2e", "\u008b"))


@pytest.mark.parametrize(
    "text", ["../x", "/x", "~/x", "a:b", "100%.txt", "a\\b", "a\tb", "‥/x", "x/. ./y"]
)
def test_the_pattern_and_check_documented_refuse_alike(text: str) -> None:
    assert not re.fullmatch(RELATIVE_PATH_PATTERN, text)
    with pytest.raises(PathOutsideWorkspace):
        check_documented(text)
