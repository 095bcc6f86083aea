"""filter: drops health checks, bots and redirects (an empty line = no record)."""
from flotilla_stage import serve


def process(line):
    endpoint, status, size, ms, kind = line.split("\t")
    if endpoint.endswith("/healthz") or kind == "bot" or status.startswith("3"):
        return None
    return line


if __name__ == "__main__":
    serve(process)
