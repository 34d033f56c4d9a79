#!/usr/bin/python3
"""Interop driver for message archive paging (XEP-0313 with XEP-0059) and HTTP File Upload
(XEP-0363) with a real client library: Debian's python3-aioxmpp (tested with 0.13.3), and
python3-aiohttp for the HTTP part.

Used by xmpp/interop/clients_test.go against a Gatehouse server on 127.0.0.1. Run with
/usr/bin/python3 (Debian's interpreter sees the Debian packages):

  aioxmpp_client.py --jid alice@localhost/aio --password PW --port N --ca-file CA.pem \
      --with bob@localhost --page 5 --upload-service upload.localhost

aioxmpp has RSM (aioxmpp.rsm) and XEP-0297 forwarding but no MAM service, so the MAM query
and result elements are declared here as aioxmpp XSOs, the way an application adds a protocol
to aioxmpp. Prints one JSON object per line on stdout:
  {"event":"ready"}                          logged in (STARTTLS, SASL, bind)
  {"event":"page","dir":"forward"|"backward","bodies":[...],"complete":bool,
   "first":id,"last":id,"count":n}           one archive page, bodies in archive order
  {"event":"upload","get":url,"bytes":n}     slot requested with aioxmpp.httpupload, PUT and
                                             GET done with aiohttp, the bytes read back equal
  {"event":"too-large","condition":c,"text":t}  a slot request over max-file-size was refused
  {"result":"ok"} at exit, or {"result":"fail","reason":...} with exit 1.
"""

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys

logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

try:
    import aiohttp
    import aioxmpp
    import aioxmpp.connector
    import aioxmpp.dispatcher
    import aioxmpp.forms
    import aioxmpp.httpupload
    import aioxmpp.misc
    import aioxmpp.rsm
    import aioxmpp.rsm.xso
    import aioxmpp.security_layer
    import aioxmpp.xso as xso
except ImportError as exc:  # pragma: no cover - environment problem
    print(json.dumps({"result": "fail", "reason": "cannot import aioxmpp/aiohttp: %s" % exc}), flush=True)
    sys.exit(1)

NS_MAM = "urn:xmpp:mam:2"


class MAMQuery(xso.XSO):
    TAG = (NS_MAM, "query")
    queryid = xso.Attr("queryid", default=None)
    form = xso.Child([aioxmpp.forms.Data])
    rsm = xso.Child([aioxmpp.rsm.xso.ResultSetMetadata])


class MAMFin(xso.XSO):
    TAG = (NS_MAM, "fin")
    complete = xso.Attr("complete", type_=xso.Bool(), default=False)
    rsm = xso.Child([aioxmpp.rsm.xso.ResultSetMetadata])


class MAMResult(xso.XSO):
    TAG = (NS_MAM, "result")
    queryid = xso.Attr("queryid", default=None)
    id_ = xso.Attr("id")
    forwarded = xso.Child([aioxmpp.misc.Forwarded])


aioxmpp.IQ.as_payload_class(MAMQuery)
aioxmpp.IQ.as_payload_class(MAMFin)
aioxmpp.Message.xep0313_result = xso.Child([MAMResult])


def emit(event, **kw):
    kw["event"] = event
    print(json.dumps(kw), flush=True)


def with_form(peer):
    form = aioxmpp.forms.Data(type_=aioxmpp.forms.DataType.SUBMIT)
    ft = aioxmpp.forms.Field(var="FORM_TYPE", type_=aioxmpp.forms.FieldType.HIDDEN)
    ft.values[:] = [NS_MAM]
    w = aioxmpp.forms.Field(var="with")
    w.values[:] = [peer]
    form.fields[:] = [ft, w]
    return form


class Archive:
    """Runs MAM queries and collects the result messages of each."""

    def __init__(self, client):
        self.client = client
        self.pending = {}  # queryid -> list of (id, body)
        self.n = 0
        client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(
            aioxmpp.MessageType.NORMAL, None, self.on_message)

    def on_message(self, msg):
        res = msg.xep0313_result
        if res is None or res.queryid not in self.pending:
            return
        fw = res.forwarded
        inner = fw.stanza if fw is not None else None
        body = None
        if inner is not None and inner.body:
            body = inner.body.any()
        self.pending[res.queryid].append((res.id_, body))

    async def page(self, peer, rsm):
        self.n += 1
        qid = "q%d" % self.n
        self.pending[qid] = []
        q = MAMQuery()
        q.queryid = qid
        q.form = with_form(peer)
        q.rsm = rsm
        fin = await self.client.send(aioxmpp.IQ(type_=aioxmpp.IQType.SET, payload=q))
        got = self.pending.pop(qid)
        return got, fin


async def run(args):
    ca = args.ca_file

    def ssl_context():
        ctx = aioxmpp.security_layer.default_ssl_context()
        ctx.load_verify_locations(ca)
        return ctx

    jid = aioxmpp.JID.fromstr(args.jid)
    security = aioxmpp.security_layer.make(args.password, ssl_context_factory=ssl_context)
    client = aioxmpp.PresenceManagedClient(
        jid, security,
        override_peer=[("127.0.0.1", int(args.port), aioxmpp.connector.STARTTLSConnector())])
    archive = Archive(client)
    async with client.connected() as stream:
        emit("ready")
        # Forwards: first page, then after the last id of each page until complete.
        rsm = aioxmpp.rsm.xso.ResultSetMetadata.limit(args.page)
        for _ in range(50):  # bounded: the archive is small
            got, fin = await archive.page(args.with_, rsm)
            emit("page", dir="forward", bodies=[b for _, b in got], complete=bool(fin.complete),
                 first=fin.rsm.first.value if fin.rsm and fin.rsm.first else None,
                 last=fin.rsm.last.value if fin.rsm and fin.rsm.last else None,
                 count=fin.rsm.count if fin.rsm else None)
            if fin.complete or not got:
                break
            rsm = fin.rsm.next_page(args.page)
        # Backwards: the last page (empty <before/>), then before the first id of each.
        rsm = aioxmpp.rsm.xso.ResultSetMetadata.last_page(args.page)
        for _ in range(50):
            got, fin = await archive.page(args.with_, rsm)
            emit("page", dir="backward", bodies=[b for _, b in got], complete=bool(fin.complete),
                 first=fin.rsm.first.value if fin.rsm and fin.rsm.first else None,
                 last=fin.rsm.last.value if fin.rsm and fin.rsm.last else None,
                 count=fin.rsm.count if fin.rsm else None)
            if fin.complete or not got:
                break
            rsm = fin.rsm.previous_page(args.page)

        if args.upload_service:
            service = aioxmpp.JID.fromstr(args.upload_service)
            data = os.urandom(3000) + b"aioxmpp upload\n"
            slot = await aioxmpp.httpupload.request_slot(client, service, "aio test.bin", len(data),
                                                         "application/octet-stream")
            tls = ssl.create_default_context(cafile=ca)
            headers = {"Content-Type": "application/octet-stream"}
            for h in slot.put.headers.keys():
                headers[h] = slot.put.headers[h][0] if isinstance(slot.put.headers[h], list) else slot.put.headers[h]
            async with aiohttp.ClientSession() as http:
                async with http.put(slot.put.url, data=data, headers=headers, ssl=tls) as r:
                    if r.status != 201:
                        raise RuntimeError("PUT %s: HTTP %d %s" % (slot.put.url, r.status, await r.text()))
                async with http.get(slot.get.url, ssl=tls) as r:
                    back = await r.read()
                    if r.status != 200 or back != data:
                        raise RuntimeError("GET %s: HTTP %d, %d bytes back" % (slot.get.url, r.status, len(back)))
            emit("upload", get=slot.get.url, bytes=len(back))
            try:
                await aioxmpp.httpupload.request_slot(client, service, "huge.bin", args.too_large,
                                                      "application/octet-stream")
                raise RuntimeError("a slot of %d bytes was granted" % args.too_large)
            except aioxmpp.errors.XMPPError as exc:
                emit("too-large", condition=exc.condition.value[1], text=exc.text or "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jid", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--with", dest="with_", required=True)
    ap.add_argument("--page", type=int, default=5)
    ap.add_argument("--upload-service", default="")
    ap.add_argument("--too-large", type=int, default=1 << 40)
    args = ap.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(args), 60))
    except Exception as exc:  # report every failure as a JSON line
        print(json.dumps({"result": "fail", "reason": "%s: %s" % (type(exc).__name__, exc)}), flush=True)
        sys.exit(1)
    print(json.dumps({"result": "ok"}), flush=True)


if __name__ == "__main__":
    main()
