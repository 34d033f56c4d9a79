// Interop driver: the npm package @xmpp/client (xmpp.js) over WebSocket (RFC 7395).
//
// Used by xmpp/websocket/xmppjs_test.go against a Gatehouse server on 127.0.0.1. Run with
//   node xmppjs_client.mjs --modules DIR --service wss://... \
//        --domain localhost --user alice --password secret [--resource r]
// where DIR holds node_modules/@xmpp/client and node_modules/ws (.ci/deps.sh installs both).
// Where Node has no built-in WebSocket (before 22), the ws package stands in. Trust the test
// CA with NODE_EXTRA_CA_CERTS.
//
// Prints one JSON object per line on stdout:
//   {"event":"online","jid":...}          bound, initial presence sent
//   {"event":"sm","id":...}               stream management enabled, resumable
//   {"event":"message","from":...,"body":...,"delayed":bool}
//   {"event":"cut"}                       after a message with body "cut": the WebSocket is
//                                         dropped without <close/>, as a network failure would
//   {"event":"resumed"}                   the session was resumed (XEP-0198)
//   {"result":"ok"} at the end, or {"result":"fail","reason":...} with exit 1.
// Commands on stdin, one per line:
//   reconnect          open a new WebSocket and resume the session (XEP-0198)
//   send JID BODY      send a chat message
//   quit               close the stream cleanly and exit
import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { createInterface } from "node:readline";

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(reason) {
  out({ result: "fail", reason: String(reason) });
  process.exit(1);
}

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
for (const k of ["modules", "service", "domain", "user", "password"]) {
  if (!args[k]) {
    out({ result: "fail", reason: `missing --${k}` });
    process.exit(2);
  }
}

const deadline = setTimeout(() => fail("timed out"), 60_000);

// Node before 22 (Debian 12 has 18) has no built-in WebSocket: use the npm
// package ws, which has the browser API @xmpp/websocket expects.
if (typeof globalThis.WebSocket === "undefined") {
  const ws = await import(pathToFileURL(join(args.modules, "node_modules/ws/wrapper.mjs")).href);
  globalThis.WebSocket = ws.WebSocket;
}

const { client, xml } = await import(
  pathToFileURL(join(args.modules, "node_modules/@xmpp/client/index.js")).href
);

const xmpp = client({
  service: args.service,
  domain: args.domain,
  username: args.user,
  password: args.password,
  resource: args.resource,
});
// The test decides when to come back, so it can check the server kept the session.
xmpp.reconnect.stop();

xmpp.on("error", (err) => process.stderr.write(`xmpp error: ${err}\n`));
xmpp.on("online", async (address) => {
  await xmpp.send(xml("presence"));
  out({ event: "online", jid: address.toString() });
});

const sm = xmpp.streamManagement;
sm.on("resumed", () => out({ event: "resumed" }));
let smTimer = setInterval(() => {
  if (sm.enabled && sm.id) {
    out({ event: "sm", id: sm.id });
    clearInterval(smTimer);
  }
}, 10);

xmpp.on("stanza", (stanza) => {
  if (!stanza.is("message")) return;
  const body = stanza.getChildText("body");
  if (body === null) return;
  out({
    event: "message",
    from: stanza.attrs.from,
    body,
    delayed: stanza.getChild("delay", "urn:xmpp:delay") !== undefined,
  });
  if (body === "cut") {
    // Reported once the client itself has seen the transport go, so a
    // reconnect does not race the old socket's close event.
    xmpp.once("disconnect", () => out({ event: "cut" }));
    // The browser-style WebSocket under @xmpp/websocket: closing it ends
    // the transport without the XMPP <close/>.
    xmpp.socket.socket.close();
  }
});

const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const [cmd, ...rest] = line.trim().split(" ");
  try {
    switch (cmd) {
      case "reconnect":
        // Resumption (or, failing that, a fresh bind) happens in the
        // stream features; "resumed" is printed when it succeeds.
        await xmpp.reconnect.reconnect();
        break;
      case "send":
        await xmpp.send(xml("message", { to: rest[0], type: "chat" }, xml("body", {}, rest.slice(1).join(" "))));
        break;
      case "quit":
        clearInterval(smTimer);
        await xmpp.stop();
        clearTimeout(deadline);
        out({ result: "ok" });
        process.exit(0);
    }
  } catch (err) {
    fail(err);
  }
});

try {
  await xmpp.start();
} catch (err) {
  fail(err);
}
