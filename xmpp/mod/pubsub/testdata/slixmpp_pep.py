#!/usr/bin/python3
"""PEP interop driver: two real slixmpp clients (Debian's python3-slixmpp 1.8.3).

Run by xmpp/mod/pubsub's Go tests against a Gatehouse server on 127.0.0.1 where
--alice and --bob are mutual contacts. Prints one JSON object per line and ends with
{"result": "ok"} (exit 0) or {"result": "fail", "reason": ...} (exit 1).

  bob    logs in with entity caps (XEP-0115) that ask for tune and avatar
         notifications (+notify), and waits for alice's tune and avatar events.
  alice  logs in, waits for bob's presence, publishes a tune (XEP-0118) and an
         avatar (XEP-0084 data + metadata), reads her own vCard (the server must
         have copied the avatar into it, XEP-0398), stores XEP-0048 bookmarks in
         private XML and reads them back as XEP-0402 items from PEP.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

try:
    from slixmpp import ClientXMPP, JID
    from slixmpp.plugins.xep_0048.stanza import Bookmarks
except ImportError as exc:  # pragma: no cover - environment problem
    print(json.dumps({"result": "fail", "reason": "cannot import slixmpp: %s" % exc}), flush=True)
    sys.exit(1)

T0 = time.monotonic()
AVATAR = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
TUNE_TITLE = "Heart of the Sunrise"


def emit(event, **fields):
    rec = {"t": round(time.monotonic() - T0, 3), "event": event}
    rec.update(fields)
    print(json.dumps(rec), flush=True)


class Failed(Exception):
    pass


def disable_channel_binding(x):
    # slixmpp 1.8.3 sends gs2 flag 'y' next to offered -PLUS mechanisms, which a
    # server must refuse as a downgrade; act as a client without channel binding.
    fm = x["feature_mechanisms"]
    orig = fm.sasl_callback

    def callback(required, optional):
        creds = orig(required, optional)
        if "channel_binding" in creds:
            creds["channel_binding"] = None
        return creds

    fm.sasl_callback = callback


class Client(ClientXMPP):
    def __init__(self, jid, password, ca):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.ca_certs = Path(ca)
        for p in ("xep_0030", "xep_0060", "xep_0115", "xep_0163", "xep_0118", "xep_0084",
                  "xep_0054", "xep_0049", "xep_0048", "xep_0199"):
            self.register_plugin(p)
        self.started = asyncio.Event()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", lambda _e: emit("failed_auth", jid=str(self.boundjid)))
        disable_channel_binding(self)

    async def on_start(self, _event):
        await self.get_roster()
        self.send_presence()
        emit("online", jid=str(self.boundjid))
        self.started.set()


async def run(args):
    alice = Client(args.alice, args.alice_password, args.ca_file)
    bob = Client(args.bob, args.bob_password, args.ca_file)

    tune = asyncio.get_event_loop().create_future()
    avatar = asyncio.get_event_loop().create_future()
    bob_online = asyncio.Event()

    def on_tune(msg):
        if msg["from"].bare == JID(args.alice).bare and not tune.done():
            t = msg["pubsub_event"]["items"]["item"]["tune"]
            emit("bob_got_tune", title=t["title"], artist=t["artist"])
            tune.set_result(t["title"])

    def on_avatar(msg):
        if msg["from"].bare == JID(args.alice).bare and not avatar.done():
            info = msg["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
            emit("bob_got_avatar", id=info["id"])
            avatar.set_result(info["id"])

    def on_presence(p):
        if p["from"].bare == JID(args.bob).bare and p["type"] in ("available", ""):
            bob_online.set()

    bob.add_event_handler("user_tune_publish", on_tune)
    bob.add_event_handler("avatar_metadata_publish", on_avatar)
    alice.add_event_handler("presence_available", on_presence)

    for c in (bob, alice):
        c.connect((args.server_host, args.port), force_starttls=True)
        await asyncio.wait_for(c.started.wait(), 20)
    await asyncio.wait_for(bob_online.wait(), 20)

    await alice["xep_0118"].publish_tune(artist="Yes", title=TUNE_TITLE)
    emit("alice_published_tune")
    aid = hashlib.sha1(AVATAR).hexdigest()
    await alice["xep_0084"].publish_avatar(AVATAR)
    await alice["xep_0084"].publish_avatar_metadata([{"id": aid, "type": "image/png", "bytes": len(AVATAR)}])
    emit("alice_published_avatar", id=aid)

    if await asyncio.wait_for(tune, 20) != TUNE_TITLE:
        raise Failed("wrong tune title")
    if await asyncio.wait_for(avatar, 20) != aid:
        raise Failed("wrong avatar id")

    # XEP-0398: the avatar is now the vCard photo.
    iq = await alice["xep_0054"].get_vcard(JID(args.alice).bare)
    binval = iq["vcard_temp"]["PHOTO"]["BINVAL"]
    if binval != AVATAR:
        raise Failed("vCard PHOTO is not the PEP avatar (%d bytes)" % len(binval or b""))
    emit("vcard_photo", bytes=len(binval))

    # XEP-0048 bookmarks in private XML become XEP-0402 items.
    bm = Bookmarks()
    bm.add_conference("room@conference.localhost", "al", name="Room", autojoin=True)
    await alice["xep_0048"].set_bookmarks(bm, method="xep_0049")
    items = await alice["xep_0060"].get_items(None, "urn:xmpp:bookmarks:1")
    ids = [it["id"] for it in items["pubsub"]["items"]]
    emit("bookmarks_items", ids=ids)
    if "room@conference.localhost" not in ids:
        raise Failed("bookmark not mirrored to PEP: %s" % ids)

    for c in (alice, bob):
        c.disconnect()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alice", required=True)
    ap.add_argument("--alice-password", required=True)
    ap.add_argument("--bob", required=True)
    ap.add_argument("--bob-password", required=True)
    ap.add_argument("--server-host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    if args.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(run(args), args.timeout))
    except Exception as exc:  # report every failure as a result line
        print(json.dumps({"result": "fail", "reason": "%s: %s" % (type(exc).__name__, exc)}), flush=True)
        sys.exit(1)
    print(json.dumps({"result": "ok"}), flush=True)


if __name__ == "__main__":
    main()
