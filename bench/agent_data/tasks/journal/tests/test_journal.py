from journal import Journal


def test_entries_are_readable_at_once(tmp_path):
    journal = Journal(tmp_path / "log.txt")
    journal.write("first")
    journal.write("second\nline")
    assert journal.entries() == ["first", "second line"]


def test_two_journals_share_a_file(tmp_path):
    Journal(tmp_path / "log.txt").write("a")
    other = Journal(tmp_path / "log.txt")
    other.write("b")
    assert other.entries() == ["a", "b"]


def test_empty(tmp_path):
    assert Journal(tmp_path / "none.txt").entries() == []
