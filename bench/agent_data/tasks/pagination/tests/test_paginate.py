from paginate import page, page_count


def test_page_count_exact():
    assert page_count(9, 3) == 3
    assert page_count(0, 5) == 0


def test_page_count_partial_last_page():
    assert page_count(10, 3) == 4
    assert page_count(1, 20) == 1


def test_pages():
    items = list(range(10))
    assert page(items, 1, 3) == [0, 1, 2]
    assert page(items, 4, 3) == [9]
    assert page(items, 5, 3) == []
