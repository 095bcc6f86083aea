"""Source: FLOTILLA_RECORDS web-server log lines, deterministic (a source
must be replayable: a restarted source is re-run and its first lines
skipped)."""
import os
import sys

PATHS = ["/", "/login", "/api/v1/items", "/api/v1/items/42", "/api/v1/orders", "/static/app.js",
         "/static/app.css", "/healthz", "/search", "/api/v1/users/7", "/cart", "/checkout"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
STATUS = [200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 500, 503]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "curl/8.4.0",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1) Safari/604.1", "Googlebot/2.1"]


def lines(n, seed=12345):
    x = seed
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        r = x >> 16
        ip = "10.%d.%d.%d" % ((r >> 8) & 255, (r >> 16) & 255, (r >> 24) & 255)
        path = PATHS[r % len(PATHS)]
        query = "?q=%d" % (r % 97) if r % 5 == 0 else ""
        yield ('%s - - [08/Dec/2026:00:%02d:%02d +0000] "%s %s%s HTTP/1.1" %d %d "-" "%s" %d'
               % (ip, (i // 60) % 60, i % 60, METHODS[(r >> 4) % len(METHODS)], path, query,
                  STATUS[(r >> 7) % len(STATUS)], (r >> 3) % 50000,
                  AGENTS[(r >> 11) % len(AGENTS)], (r >> 5) % 900 + 1))


def main():
    n = int(os.environ.get("FLOTILLA_RECORDS", "1000"))
    out = sys.stdout
    batch = []
    for line in lines(n):
        batch.append(line)
        if len(batch) == 512:
            out.write("\n".join(batch) + "\n")
            batch = []
    if batch:
        out.write("\n".join(batch) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
