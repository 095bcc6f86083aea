"""The shared key-value store and a message queue.

    PYTHONPATH=sdk/python python3 examples/python/state.py
"""
import json

import flotilla

client = flotilla.Client()                          # $FLOTILLA_HTTP or `flotilla up`'s record

kv = client.kv("inventory")
version = kv.put("apples", json.dumps({"count": 3}), ttl=3600)
print(json.loads(kv.get("apples")), "version", version)
try:
    kv.put("apples", b"{}", if_version=version + 100)
except flotilla.ConflictError as e:
    print("lost the race:", e)
print("cas:", kv.cas("apples", kv.get("apples"), json.dumps({"count": 4})))
print([e.key for e in kv.list(prefix="app")])

q = client.queue("orders")
q.send(json.dumps({"order": 1}))
for m in q.receive(group="billing", consumer="worker-1", max=10, block_ms=1000):
    print("got", m.id, json.loads(m.message), "delivery", m.deliveries)
    q.ack("billing", m.id)

changes = kv.watch(prefix="app", timeout=1.0)      # changes from now on, for up to 1 s
print("events:", [(e.type, e.key) for e in changes], "next revision", changes.revision)
