"""Functions whose side effects must keep them whole."""
import flotilla

counter = 0
LOG = []


@flotilla.splitable
def prints(a):
    x = a * 2
    print("x is", x)
    return x


@flotilla.splitable
def bumps_global(a):
    global counter
    counter += a
    return counter


@flotilla.splitable
def appends_to_module_list(a):
    y = a + 1
    LOG.append(y)
    return len(LOG)


@flotilla.splitable
def early_return(a):
    if a > 0:
        return "positive"
    b = -a
    return "non-positive %d" % b


CASES = [
    ("prints", [4], {}),
    ("bumps_global", [5], {}),
    ("appends_to_module_list", [1], {}),
    ("early_return", [3], {}),
    ("early_return", [-3], {}),
]
SPLIT = {"prints": False, "bumps_global": False, "appends_to_module_list": False,
         "early_return": False}
