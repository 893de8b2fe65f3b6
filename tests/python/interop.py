"""A client written against the standard protocol in another language: pyzmq and msgpack.

Usage: interop.py BROKER_ENDPOINT SUB_ENDPOINT
Exits 0 when every step behaved as the protocol says; prints what went wrong otherwise.
"""
import sys
import time

import msgpack
import zmq

broker, sub_endpoint = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
req = ctx.socket(zmq.REQ)
req.setsockopt(zmq.RCVTIMEO, 5000)
req.setsockopt(zmq.LINGER, 0)
req.connect(broker)
clock = 0


def call(service, **data):
    global clock
    clock += 1
    data.setdefault("timestamp", time.time())
    data["clock"] = clock
    req.send(msgpack.packb({"service": service, "data": data}))
    reply = msgpack.unpackb(req.recv(), raw=False)
    clock = max(clock, reply["data"].get("clock", 0))
    assert reply["service"] == service, reply
    return reply["data"]


assert call("login", user="py")["status"] == "sucesso"
assert call("channel", channel="pychan")["status"] == "sucesso"
channels = call("channels")
assert "pychan" in channels["users"], channels
assert "py" in call("users")["users"]

# The standard lets a timestamp be anything; other clients send it as an integer, a float, a
# time of day, an ISO 8601 string, even a boolean. Every service answers normally to each.
stamps = [int(time.time()), time.time(), "13:31:41", "2026-12-01T13:31:41Z", True]
for i, stamp in enumerate(stamps):
    tag = f"stamp {stamp!r}"
    assert call("login", user=f"ts{i}", timestamp=stamp)["status"] == "sucesso", tag
    assert f"ts{i}" in call("users", timestamp=stamp)["users"], tag
    assert call("channel", channel=f"tschan{i}", timestamp=stamp)["status"] == "sucesso", tag
    assert f"tschan{i}" in call("channels", timestamp=stamp)["channels"], tag
    sent = call("publish", user=f"ts{i}", channel=f"tschan{i}", message="hi", timestamp=stamp)
    assert sent["status"] == "OK", (tag, sent)
    sent = call("message", src=f"ts{i}", dst="py", message="psst", timestamp=stamp)
    assert sent["status"] == "OK", (tag, sent)
    history = call("history", channel=f"tschan{i}", timestamp=stamp)
    assert [m["message"] for m in history["messages"]] == ["hi"], (tag, history)

sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.LINGER, 0)
sub.connect(sub_endpoint)
sub.setsockopt_string(zmq.SUBSCRIBE, "pychan")
deadline = time.time() + 10
while time.time() < deadline:
    assert call("publish", user="py", channel="pychan", message="hello from python")["status"] == "OK"
    if sub.poll(100):
        topic, body = sub.recv_multipart()
        pub = msgpack.unpackb(body, raw=False)
        assert topic == b"pychan", topic
        assert pub["service"] == "publish", pub
        assert pub["data"]["message"] == "hello from python", pub
        assert pub["data"]["user"] == "py", pub
        assert isinstance(pub["data"]["timestamp"], float), pub
        assert isinstance(pub["data"]["clock"], int), pub
        print("python client: every step behaved")
        sys.exit(0)
print("python client: the publication never arrived")
sys.exit(1)
