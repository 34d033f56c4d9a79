#!/usr/bin/python3
"""Interop driver for stream management (XEP-0198) and client state indication (XEP-0352)
with a real client: Debian's python3-slixmpp (tested with 1.8.3).

Used by xmpp/c2s/interop_test.go against a Gatehouse server on 127.0.0.1. Run with
/usr/bin/python3 (Debian's interpreter sees the Debian package):

  slixmpp_sm.py --jid alice@localhost/phone --password PW --port N --ca-file CA.pem

Prints one JSON object per line on stdout:
  {"event":"ready"}                        bound, SM enabled with resumption, presence sent
  {"event":"message","body":...,"state":...,"delayed":bool}
                                           every message (state: XEP-0085 chat state or null)
  {"event":"cut"}                          after a message with body "cut": the TCP connection
                                           was aborted (no </stream:stream>, no TLS close), as
                                           a network failure would
  {"event":"resumed"}                      the session was resumed after "reconnect"
  {"event":"bound-again"}                  resumption failed and a new session was bound
  {"event":"csi","state":"inactive"|"active"}  after sending the nonza (for inactive, after a
                                           ping round trip, so the server has read it)
  {"result":"ok"} at exit, or {"result":"fail","reason":...} with exit 1.
Commands on stdin, one per line: reconnect, inactive, active, quit.

slixmpp 1.8.3 sends the gs2 flag 'y' with a non-PLUS SCRAM mechanism when TLS is up, which a
server that offers -PLUS must refuse as a downgrade (RFC 5802 section 6); as in
slixmpp_client.py, the driver therefore logs in as a client without channel binding.
"""

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

try:
    from slixmpp import ClientXMPP
except ImportError as exc:  # pragma: no cover - environment problem
    print(json.dumps({"result": "fail", "reason": "cannot import slixmpp: %s" % exc}), flush=True)
    sys.exit(1)


def emit(event, **kw):
    kw["event"] = event
    print(json.dumps(kw), flush=True)


class Client(ClientXMPP):
    def __init__(self, args):
        # Without channel binding (see above), so no -PLUS mechanism.
        super().__init__(args.jid, args.password, sasl_mech="SCRAM-SHA-256")
        self.args = args
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0085")  # chat states
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0203")  # delay
        self.register_plugin("xep_0198")  # stream management
        self.register_plugin("xep_0352")  # client state indication
        self.ca_certs = Path(args.ca_file)
        self.done = asyncio.get_event_loop().create_future()
        self.cutting = False
        self.resuming = False
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("session_resumed", self.on_resumed)
        self.add_event_handler("message", self.on_message)
        # slixmpp raises "message" only for messages with a body.
        self.add_event_handler("chatstate", self.on_chatstate)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("no_auth", lambda _: self.fail("authentication failed with every mechanism"))

    def fail(self, reason):
        if not self.done.done():
            self.done.set_exception(RuntimeError(reason))

    async def on_start(self, _):
        if self.resuming:
            emit("bound-again")
            return
        self.send_presence()
        # Wait until <enabled/> arrived, so the session is resumable.
        for _ in range(500):
            if self["xep_0198"].sm_id:
                break
            await asyncio.sleep(0.01)
        else:
            self.fail("stream management was not enabled")
            return
        emit("ready", jid=str(self.boundjid))

    def on_resumed(self, _):
        emit("resumed")

    def on_message(self, msg):
        state = msg["chat_state"] or None
        body = msg["body"] or None
        emit("message", body=body, state=state, delayed=msg.xml.find("{urn:xmpp:delay}delay") is not None)
        if body == "cut":
            self.cutting = True
            # Abort: no closing tag, no TLS close_notify, nothing more read.
            self.transport.abort()

    def on_chatstate(self, msg):
        if not msg["body"]:
            emit("message", body=None, state=msg["chat_state"],
                 delayed=msg.xml.find("{urn:xmpp:delay}delay") is not None)

    def on_disconnected(self, reason):
        if self.cutting:
            self.cutting = False
            emit("cut")
        elif not self.done.done() and not self.resuming:
            self.fail("disconnected unexpectedly (%s)" % (reason,))

    async def command(self, line):
        cmd = line.strip()
        if cmd == "reconnect":
            self.resuming = True
            self.connect(("127.0.0.1", self.args.port))
        elif cmd == "inactive":
            self["xep_0352"].send_inactive()
            # A round trip on the same stream: the server has read the
            # nonza when the answer comes (nothing is held yet to flush).
            await self["xep_0199"].ping(jid=self.boundjid.domain, timeout=10)
            emit("csi", state="inactive")
        elif cmd == "active":
            self["xep_0352"].send_active()
            emit("csi", state="active")
        elif cmd == "quit":
            self.done.set_result(None)


def disable_channel_binding(x):
    fm = x["feature_mechanisms"]
    orig = fm.sasl_callback

    def callback(required, optional):
        creds = orig(required, optional)
        if "channel_binding" in creds:
            creds["channel_binding"] = None
        return creds

    fm.sasl_callback = callback


async def read_commands(x):
    loop = asyncio.get_event_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not x.done.done():
        line = await reader.readline()
        if not line:
            x.fail("stdin closed")
            return
        await x.command(line.decode())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    x = Client(args)
    disable_channel_binding(x)
    x.connect(("127.0.0.1", args.port))
    commands = loop.create_task(read_commands(x))
    try:
        loop.run_until_complete(asyncio.wait_for(asyncio.shield(x.done), args.timeout))
    except Exception as exc:  # noqa: BLE001 - report any failure as JSON
        print(json.dumps({"result": "fail", "reason": str(exc) or type(exc).__name__}), flush=True)
        sys.exit(1)
    commands.cancel()
    x.del_event_handler("disconnected", x.on_disconnected)
    fut = x.disconnect(wait=2.0)
    if fut is not None:
        try:
            loop.run_until_complete(asyncio.wait_for(fut, 5))
        except Exception:  # noqa: BLE001
            pass
    print(json.dumps({"result": "ok"}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
