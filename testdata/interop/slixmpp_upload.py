#!/usr/bin/python3
"""Interop driver for HTTP File Upload (XEP-0363) with a real client: Debian's python3-slixmpp
(tested with 1.8.3) and its xep_0363 plugin, which needs python3-aiohttp.

Used by xmpp/interop/clients_test.go against a Gatehouse server on 127.0.0.1:

  SSL_CERT_FILE=CA.pem slixmpp_upload.py --jid alice@localhost/up --password PW --port N \
      --ca-file CA.pem --file PATH --to bob@localhost

The driver finds the upload service through disco (disco#items of the server, then
disco#info of each item) and max-file-size from its form; the plugin asks for a slot and PUTs
the file with aiohttp (which trusts SSL_CERT_FILE). The driver then sends the GET URL to --to as a chat message with
an XEP-0066 out-of-band URL, as Conversations and Dino share files.
Prints one JSON object per line on stdout:
  {"event":"ready","jid":...}
  {"event":"uploaded","url":...,"service":...,"max":n}
  {"event":"sent"}
  {"result":"ok"} at exit, or {"result":"fail","reason":...} with exit 1.

As in slixmpp_sm.py, the driver logs in without channel binding (slixmpp 1.8.3 sends the gs2
flag 'y' with a non-PLUS mechanism, which a server offering -PLUS must refuse).
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
    import aiohttp  # noqa: F401 - the xep_0363 plugin imports it
except ImportError as exc:  # pragma: no cover - environment problem
    print(json.dumps({"result": "fail", "reason": "cannot import slixmpp/aiohttp: %s" % exc}), flush=True)
    sys.exit(1)


def emit(event, **kw):
    kw["event"] = event
    print(json.dumps(kw), flush=True)


class Client(ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password, sasl_mech="SCRAM-SHA-256")
        self.args = args
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0066")  # out-of-band data
        self.register_plugin("xep_0363")  # HTTP File Upload
        self.ca_certs = Path(args.ca_file)
        self.done = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("no_auth", lambda _: self.fail("authentication failed"))

    def fail(self, reason):
        if not self.done.done():
            self.done.set_exception(RuntimeError(reason))

    async def on_start(self, _):
        try:
            self.send_presence()
            emit("ready", jid=str(self.boundjid))
            plugin = self["xep_0363"]
            # The plugin's own discovery (find_upload_service, via xep_0030
            # get_info_from_domain) passes coroutines to asyncio.wait, which
            # Python 3.11 refuses; so the driver does the same disco walk
            # with xep_0030 and hands the plugin what it found.
            items = await self["xep_0030"].get_items(jid=self.boundjid.domain, timeout=10)
            for item in items["disco_items"]["items"]:
                info = await self["xep_0030"].get_info(jid=item[0], timeout=10)
                if "urn:xmpp:http:upload:0" not in info["disco_info"]["features"]:
                    continue
                plugin.upload_service = info["from"]
                for form in info["disco_info"].iterables:
                    values = form["values"]
                    if values.get("FORM_TYPE") == ["urn:xmpp:http:upload:0"]:
                        plugin.max_file_size = int(values["max-file-size"])
                break
            if plugin.upload_service is None:
                raise RuntimeError("no upload service in disco#items of %s" % self.boundjid.domain)
            url = await plugin.upload_file(Path(self.args.file), timeout=20)
            emit("uploaded", url=url, service=str(plugin.upload_service), max=plugin.max_file_size)
            msg = self.make_message(mto=self.args.to, mbody=url, mtype="chat")
            msg["oob"]["url"] = url
            msg.send()
            emit("sent")
            self.done.set_result(None)
        except Exception as exc:  # noqa: BLE001 - report any failure as JSON
            self.fail("%s: %s" % (type(exc).__name__, exc))


def disable_channel_binding(x):
    fm = x["feature_mechanisms"]
    orig = fm.sasl_callback

    def callback(required, optional):
        creds = orig(required, optional)
        if "channel_binding" in creds:
            creds["channel_binding"] = None
        return creds

    fm.sasl_callback = callback


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    x = Client(args)
    disable_channel_binding(x)
    x.connect(("127.0.0.1", args.port))
    try:
        loop.run_until_complete(asyncio.wait_for(asyncio.shield(x.done), args.timeout))
    except Exception as exc:  # noqa: BLE001 - report any failure as JSON
        print(json.dumps({"result": "fail", "reason": str(exc) or type(exc).__name__}), flush=True)
        sys.exit(1)
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
