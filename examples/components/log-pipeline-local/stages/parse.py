"""parse: a combined-log line -> "endpoint<TAB>status<TAB>bytes<TAB>ms<TAB>client".
The endpoint (method and normalised path) is the key the aggregate groups by."""
import re

from flotilla_stage import serve

LINE = re.compile(r'^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+) "([^"]*)" "([^"]*)" (\d+)$')
NUMBER = re.compile(r"/\d+")


def client_kind(agent):
    a = agent.lower()
    if "bot" in a or "spider" in a:
        return "bot"
    if "curl" in a or "wget" in a:
        return "tool"
    if "iphone" in a or "android" in a or "mobile" in a:
        return "mobile"
    return "desktop"


def process(line):
    m = LINE.match(line)
    if m is None:
        return "invalid\t0\t0\t0\tnone"
    ip, ts, method, target, proto, status, size, ref, agent, ms = m.groups()
    path = target.split("?", 1)[0]
    endpoint = method + " " + NUMBER.sub("/:id", path)
    return "%s\t%s\t%s\t%s\t%s" % (endpoint, status, size, ms, client_kind(agent))


if __name__ == "__main__":
    serve(process)
