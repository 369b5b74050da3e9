"""Small matrix helpers on lists of rows: shape, transpose, product, identity, trace."""

Matrix = list[list[float]]


def shape(m: Matrix) -> tuple[int, int]:
    """(rows, columns); ragged matrices are rejected."""
    if not m:
        return (0, 0)
    width = len(m[0])
    if any(len(row) != width for row in m):
        raise ValueError("rows have different lengths")
    return (len(m), width)


def transpose(m: Matrix) -> Matrix:
    rows, cols = shape(m)
    return [[m[r][c] for r in range(rows)] for c in range(cols)]


def multiply(a: Matrix, b: Matrix) -> Matrix:
    a_rows, a_cols = shape(a)
    b_rows, b_cols = shape(b)
    if a_cols != b_rows:
        raise ValueError(f"cannot multiply {a_rows}x{a_cols} by {b_rows}x{b_cols}")
    return [[sum(a[i][k] * b[k][j] for k in range(a_cols)) for j in range(b_cols)]
            for i in range(a_rows)]


def identity(n: int) -> Matrix:
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def trace(m: Matrix) -> float:
    rows, cols = shape(m)
    if rows != cols:
        raise ValueError("trace needs a square matrix")
    return sum(m[i][i] for i in range(rows))
