// A client written against the standard protocol in JavaScript: the `zeromq` and
// `@msgpack/msgpack` packages from npm.
//
// Usage: node interop.js BROKER_ENDPOINT SUB_ENDPOINT
// Exits 0 when every step behaved as the protocol says; prints what went wrong otherwise.
"use strict";
const zmq = require("zeromq");
const { encode, decode } = require("@msgpack/msgpack");

const [broker, subEndpoint] = process.argv.slice(2);

function check(ok, what) {
  if (!ok) {
    throw new Error(what);
  }
}

async function main() {
  const req = new zmq.Request({ receiveTimeout: 5000, linger: 0 });
  req.connect(broker);
  let clock = 0;
  async function call(service, data = {}) {
    clock += 1;
    await req.send(encode({ service, data: { ...data, timestamp: Date.now() / 1000, clock } }));
    const [frame] = await req.receive();
    const reply = decode(frame);
    check(reply.service === service, `reply to ${service}: ${JSON.stringify(reply)}`);
    clock = Math.max(clock, Number(reply.data.clock ?? 0));
    return reply.data;
  }

  check((await call("login", { user: "js" })).status === "sucesso", "login");
  check((await call("channel", { channel: "jschan" })).status === "sucesso", "channel");
  check((await call("channels")).channels.includes("jschan"), "channels lists jschan");
  check((await call("users")).users.includes("js"), "users lists js");

  const sub = new zmq.Subscriber({ linger: 0, receiveTimeout: 100 });
  sub.connect(subEndpoint);
  sub.subscribe("jschan");
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const sent = await call("publish", { user: "js", channel: "jschan", message: "hello from node" });
    check(sent.status === "OK", `publish: ${JSON.stringify(sent)}`);
    let frames;
    try {
      frames = await sub.receive();
    } catch (e) {
      if (e.code === "EAGAIN") {
        continue;
      }
      throw e;
    }
    const [topic, body] = frames;
    const pub = decode(body);
    check(topic.toString() === "jschan", `topic ${topic}`);
    check(pub.service === "publish", `service ${pub.service}`);
    check(pub.data.message === "hello from node" && pub.data.user === "js", JSON.stringify(pub));
    check(typeof pub.data.timestamp === "number" && Number.isInteger(pub.data.clock), JSON.stringify(pub));
    console.log("node client: every step behaved");
    req.close();
    sub.close();
    return;
  }
  throw new Error("the publication never arrived");
}

main().catch((e) => {
  console.error(`node client: ${e.stack || e}`);
  process.exit(1);
});
