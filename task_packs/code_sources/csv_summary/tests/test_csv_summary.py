from csv_summary import column_stats, group_totals, read_rows

SALES = """region,product,amount
north,apples,10
south,pears,4.5
north,pears,
east,apples,7.5
south,apples,3
"""


def test_read_rows():
    rows = read_rows(SALES)
    assert len(rows) == 5
    assert rows[0] == {"region": "north", "product": "apples", "amount": "10"}


def test_column_stats_skip_blank_cells():
    stats = column_stats(read_rows(SALES), "amount")
    assert stats == {"count": 4, "sum": 25.0, "mean": 6.25, "min": 3.0, "max": 10.0}


def test_stats_of_empty_column():
    assert column_stats(read_rows("a,b\n,1\n"), "a")["count"] == 0


def test_group_totals_sorted_by_key():
    totals = group_totals(read_rows(SALES), "region", "amount")
    assert list(totals.items()) == [("east", 7.5), ("north", 10.0), ("south", 7.5)]
