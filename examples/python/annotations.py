"""Annotations changed at run time apply to the next call, without a redeploy.

    PYTHONPATH=sdk/python python3 examples/python/annotations.py
"""
import flotilla


@flotilla.splitable
def normalise(values):
    total = sum(values)
    shares = [v / total for v in values]
    return shares


if __name__ == "__main__":
    client = flotilla.default_client()
    print(normalise([1, 2, 5]))                     # deploys, then runs (split)
    client.update_annotations(normalise.name, splitable=False,
                              geo_preference=["us-east"],
                              resource_constraint={"memory": "128Mi", "timeout": "10s"})
    future = normalise.remote([1, 2, 5])            # runs whole, in us-east if it can
    print(future.result(timeout=60), "split:", future.workflow["split"])
