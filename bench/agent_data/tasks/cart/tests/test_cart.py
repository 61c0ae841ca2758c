from cart import Cart, Item


def test_total():
    cart = Cart()
    cart.add("apple", 0.5, 4)
    cart.add("pear", 0.75)
    assert cart.total() == 2.75
    assert len(cart) == 5


def test_new_carts_are_empty():
    first = Cart()
    first.add("milk", 1.2)
    second = Cart()
    assert len(second) == 0


def test_initial_items():
    cart = Cart([Item("tea", 3.0, 2)])
    assert cart.total() == 6.0
