#!/usr/bin/python3
"""Group chat scenario against Gatehouse with slixmpp's XEP-0045 and XEP-0313
plugins (Debian python3-slixmpp), run by muc_interop_test.go.

Two clients, alice and bob, in one event loop: alice creates and configures a
room, bob joins, they talk, carol-less history is checked by bob rejoining,
alice kicks and then bans bob, and alice queries the room archive. Prints one
JSON line per step; exits 0 when every step passed, 1 otherwise.
"""

import argparse
import asyncio
import json
import ssl
import sys
from pathlib import Path

from slixmpp import ClientXMPP, JID
from slixmpp.exceptions import PresenceError


def emit(step, **kw):
    print(json.dumps({"step": step, **kw}), flush=True)


class Client(ClientXMPP):
    def __init__(self, jid, password, ca):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.ca_certs = Path(ca)
        for p in ("xep_0030", "xep_0045", "xep_0059", "xep_0004", "xep_0203", "xep_0297", "xep_0313", "xep_0359"):
            self.register_plugin(p)
        self.started = asyncio.get_event_loop().create_future()
        self.groupchat = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", lambda m: self.groupchat.put_nowait(m))
        self.add_event_handler("groupchat_presence", lambda p: self.presences.put_nowait(p))
        fm = self["feature_mechanisms"]
        orig = fm.sasl_callback

        def no_cb(required, optional):
            creds = orig(required, optional)
            if "channel_binding" in creds:
                creds["channel_binding"] = None
            return creds
        fm.sasl_callback = no_cb

    async def on_start(self, _):
        self.send_presence()
        await self.get_roster()
        if not self.started.done():
            self.started.set_result(True)

    async def next_body(self, body, timeout):
        while True:
            m = await asyncio.wait_for(self.groupchat.get(), timeout)
            if m["body"] == body:
                return m

    async def next_presence(self, pred, timeout):
        while True:
            p = await asyncio.wait_for(self.presences.get(), timeout)
            if pred(p):
                return p


def codes(p):
    return {int(c) for c in p["muc"]["status_codes"]}


async def scenario(a, b, room, t):
    muc_a, muc_b = a["xep_0045"], b["xep_0045"]
    pres, _subject, _occ, _hist = await muc_a.join_muc_wait(room, "Alice", timeout=t)
    if 201 not in codes(pres):
        raise AssertionError("no 201 on creation: %s" % pres)
    form = await muc_a.get_room_config(room, timeout=t)
    fields = form.get_fields()
    for var in ("muc#roomconfig_persistentroom", "muc#roomconfig_membersonly", "muc#roomconfig_whois"):
        if var not in fields:
            raise AssertionError("form lacks %s" % var)
    submit = a["xep_0004"].make_form(ftype="submit")
    submit.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/muc#roomconfig")
    submit.add_field(var="muc#roomconfig_roomname", value="Slix room")
    submit.add_field(var="muc#roomconfig_persistentroom", ftype="boolean", value=True)
    submit.add_field(var="muc#roomconfig_whois", value="anyone")
    await muc_a.set_room_config(room, submit, timeout=t)
    emit("configured")

    await muc_b.join_muc_wait(room, "Bob", timeout=t)
    emit("joined", nick="Bob")
    a.send_message(mto=room, mbody="hello from alice", mtype="groupchat")
    m = await b.next_body("hello from alice", t)
    if m["from"] != JID(room + "/Alice") or not m["stanza_id"]["id"]:
        raise AssertionError("message as bob got it: %s" % m)
    emit("message", stanza_id=m["stanza_id"]["id"])

    # History on rejoin.
    muc_b.leave_muc(room, "Bob")
    # slixmpp forgets the room on leave_muc, so watch the leave from alice's side.
    await a.next_presence(lambda p: p["type"] == "unavailable" and p["from"].resource == "Bob", t)
    _p, _s, _o, hist = await muc_b.join_muc_wait(room, "Bob", maxstanzas=5, timeout=t)
    if not any(h["body"] == "hello from alice" for h in hist):
        raise AssertionError("history on join: %s" % [str(h) for h in hist])
    emit("history", count=len(hist))

    # Kick.
    await muc_a.set_role(room, "Bob", "none", reason="test kick", timeout=t)
    p = await b.next_presence(lambda p: p["type"] == "unavailable" and p["from"].resource == "Bob", t)
    if 307 not in codes(p):
        raise AssertionError("kick presence: %s" % p)
    emit("kicked")

    # Ban: bob cannot come back.
    await muc_a.set_affiliation(room, "outcast", jid=JID(b.boundjid.bare), reason="test ban", timeout=t)
    try:
        await muc_b.join_muc_wait(room, "Bob", timeout=t)
        raise AssertionError("banned user joined")
    except PresenceError as e:
        if e.condition != "forbidden":
            raise AssertionError("ban error: %s" % e.condition)
    emit("banned")

    # Room archive (XEP-0313) through slixmpp's MAM iterator.
    bodies = []
    async for msg in a["xep_0313"].iterate(jid=JID(room)):
        bodies.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
    if "hello from alice" not in bodies:
        raise AssertionError("archive: %s" % bodies)
    emit("archive", count=len(bodies))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--room", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=20)
    args = ap.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    a = Client("alice@%s/slix" % args.domain, args.password, args.ca_file)
    b = Client("bob@%s/slix" % args.domain, args.password, args.ca_file)
    for c in (a, b):
        c.connect((args.host, args.port), force_starttls=True)
    ok = False
    try:
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(a.started, b.started), args.timeout))
        loop.run_until_complete(asyncio.wait_for(scenario(a, b, args.room, args.timeout), args.timeout * 4))
        ok = True
        emit("done")
    except Exception as e:  # noqa: BLE001 - report whatever failed
        emit("failed", error="%s: %s" % (type(e).__name__, e))
    for c in (a, b):
        try:
            loop.run_until_complete(asyncio.wait_for(c.disconnect(wait=1.0), 5))
        except Exception:  # noqa: BLE001
            pass
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
