"""A remote exception is raised in the caller as its own type.

    PYTHONPATH=sdk/python python3 examples/python/errors.py
"""
import flotilla


class InvalidOrder(Exception):
    pass


def check(order):
    if order["qty"] <= 0:
        raise InvalidOrder("order %s: quantity must be positive" % order["id"])
    return order["qty"] * order["price"]


@flotilla.splitable
def invoice(orders):
    lines = [check(o) for o in orders]
    total = sum(lines)
    return total


if __name__ == "__main__":
    orders = [{"id": 1, "qty": 2, "price": 3.5}, {"id": 2, "qty": 0, "price": 9.0}]
    try:
        invoice(orders)
    except InvalidOrder as e:                      # the original type, from a remote piece
        print("caught:", e)
        print(e.__cause__.traceback)               # the remote traceback
