from invoice import Invoice
from money import format_money


def test_format_money():
    assert format_money(1234.5) == "1,234.50 EUR"
    assert format_money(3, "USD") == "3.00 USD"


def test_summary():
    invoice = Invoice("2024-001")
    invoice.add("Widget", 3, 2.5)
    invoice.add("Gadget", 1, 1000)
    assert invoice.total == 1007.5
    assert invoice.summary() == "Widget: 7.50 EUR\nGadget: 1,000.00 EUR\nTotal: 1,007.50 EUR"
