"""A splitable fan-out: each item becomes its own piece on the federation.

    flotilla up
    PYTHONPATH=sdk/python python3 examples/python/fanout.py
"""
import flotilla


def score(word, weight):
    total = 0
    for i in range(20000):
        total += (len(word) * weight + i) % 13
    return total


@flotilla.splitable
@flotilla.geo_preference("eu-west", "us-east")
@flotilla.resource_constraint(memory="256Mi", timeout="30s", cpu="500m")
def rank(words, weight):
    clean = [w.strip().lower() for w in words]
    scores = []
    for w in clean:
        scores.append(score(w, weight))
    best = max(zip(scores, clean))
    return best, sum(scores)


if __name__ == "__main__":
    words = ["Alpha", "beta ", "Gamma", "delta", "epsilon", "zeta"]
    client = flotilla.default_client()
    plan = client.analyze(source=open(__file__).read(), entrypoint="rank")
    print("splittable:", plan["splittable"], "-", plan["reason"])
    for piece in plan["pieces"]:
        print("  %-6s %-6s %s" % (piece["id"], piece["kind"], piece["reason"]))
    print("remote:", rank(words, 3))
    print("local: ", rank.local(words, 3))
    future = rank.remote(words, 4)  # does not wait
    print("future:", future.id, future.result(timeout=120))
