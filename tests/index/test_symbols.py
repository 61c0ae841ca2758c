"""Symbol map: definitions, references, PageRank, token-budgeted repo map."""

from __future__ import annotations

from mimiverse.index.symbols import SymbolMap, extract_tags

MODELS = """class User:
    def full_name(self):
        return self.first + self.last


def load_user(db, uid):
    return User()
"""
VIEWS = """from models import load_user


def show(db, uid):
    user = load_user(db, uid)
    return user.full_name()
"""
UTIL = """def helper():
    return 1
"""


def build() -> SymbolMap:
    m = SymbolMap()
    m.update("models.py", MODELS, "python")
    m.update("views.py", VIEWS, "python")
    m.update("util.py", UTIL, "python")
    return m


def test_extract_tags_definitions_and_references() -> None:
    tags = extract_tags("models.py", MODELS, "python")
    defs = {(t.name, t.kind, t.line) for t in tags if t.role == "def"}
    assert defs == {
        ("User", "class", 1),
        ("full_name", "function", 2),
        ("load_user", "function", 6),
    }
    refs = {t.name for t in tags if t.role == "ref"}
    assert "User" in refs
    assert next(t for t in tags if t.name == "load_user").signature == "def load_user(db, uid):"


def test_definitions_and_references() -> None:
    m = build()
    assert [(t.path, t.line) for t in m.definitions("load_user")] == [("models.py", 6)]
    assert [(t.path, t.line) for t in m.definitions("User.full_name")] == [("models.py", 2)]
    refs = {(t.path, t.kind) for t in m.references("load_user")}
    assert refs == {("views.py", "import"), ("views.py", "call")}


def test_pagerank_favours_referenced_files() -> None:
    ranks = build().rank()
    assert ranks["models.py"] > ranks["views.py"]
    assert ranks["models.py"] > ranks["util.py"]


def test_repo_map_respects_budget_and_order() -> None:
    m = build()
    text = m.repo_map(budget_tokens=1000)
    assert text.index("models.py:") < text.index("views.py:")
    small = m.repo_map(budget_tokens=12)
    assert len(small) <= 48
    assert small.startswith("models.py:")


def test_update_and_remove_keep_the_map_current() -> None:
    m = build()
    m.update("views.py", "def show():\n    return 2\n", "python")
    assert m.references("load_user") == []
    m.remove("models.py")
    assert m.definitions("load_user") == []


def test_languages_without_queries_have_no_tags() -> None:
    assert extract_tags("notes.txt", "hello", "text") == []
