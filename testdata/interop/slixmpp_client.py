#!/usr/bin/python3
"""Interop driver: a real XMPP client (Debian's python3-slixmpp, tested with 1.8.3).

Used by the Go tests in xmpp/interop against a Gatehouse server on 127.0.0.1.
Run with /usr/bin/python3 (Debian's interpreter: a pyenv/venv python3 does not see the
Debian package). Prints one JSON object per line on stdout describing what happened, and
ends with {"result": "ok"} and exit 0, or {"result": "fail", "reason": ...} and exit 1
(exit 2 for bad usage). Diagnostics from slixmpp go to stderr (--debug for everything,
including every stanza sent and received).

Scenarios (--scenario):
  login      connect, TLS, SASL with --mechanism (checked: the mechanism actually used must
             be the one asked for), bind, initial presence, ping round trip, disconnect.
  send       send a chat message --body to --to (then an IQ ping round trip, so the server
             has processed the message before we leave).
  receive    initial presence, print {"event":"ready"}, wait for a message with --body
             (from --from's bare JID if given).
  subscribe  roster get, presence, send <presence type=subscribe> to --to, wait for
             <presence type=subscribed> and a roster push with subscription to/both.
             An incoming subscribe from --to is approved. With --wait-mutual also wait for
             subscription=both. Ends with a roster get ({"event":"roster"}).
  accept     roster get, presence, print ready; approve incoming subscription requests
             (from --from only, if given) and subscribe back; wait until subscription=both.
             Ends with a roster get ({"event":"roster"}).
  presence   initial presence, print ready, wait for available presence from --from.
  carbons    presence, enable XEP-0280 carbons, print ready, wait for a "sent" carbon
             whose forwarded message has --body and, with --received-body, a "received"
             carbon whose forwarded message has that body.
  offline    log in, send initial presence, expect a message with --body carrying a
             XEP-0203 <delay/> (i.e. stored while offline and delivered at presence).

TLS: --tls starttls (default) or direct; --ca-file PEM to trust, or --insecure to skip
certificate checks. --tls-max 1.2 caps the TLS version: slixmpp 1.8.3 only knows the
'tls-unique' channel binding, which is undefined for TLS 1.3, so *-PLUS needs TLS 1.2.
The certificate name checked is the JID's domain (e.g. 'localhost'), not --server-host.

Channel binding: slixmpp 1.8.3 sends the gs2 flag 'y' ("I support channel binding but
think the server does not") with a non-PLUS SCRAM mechanism whenever TLS is up, even
when the server offered SCRAM-*-PLUS. RFC 5802 section 6 makes a server that offered
-PLUS refuse that as a downgrade. --no-channel-binding makes the driver a client without
channel binding (gs2 flag 'n'), which is what a non-PLUS login by a correct client sends.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import time
from pathlib import Path

# Before importing slixmpp: it warns about its pure-Python stringprep at import time.
logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

try:
    import slixmpp
    from slixmpp import ClientXMPP, JID
except ImportError as exc:  # pragma: no cover - environment problem
    print(json.dumps({"result": "fail", "reason": "cannot import slixmpp (use /usr/bin/python3 "
                      "with Debian's python3-slixmpp): %s" % exc}), flush=True)
    sys.exit(1)

SCENARIOS = ("login", "send", "receive", "subscribe", "accept", "presence", "carbons", "offline")
T0 = time.monotonic()


def emit(event, **fields):
    rec = {"t": round(time.monotonic() - T0, 3), "event": event}
    rec.update(fields)
    print(json.dumps(rec, sort_keys=False), flush=True)


class ScenarioFailed(Exception):
    pass


class Driver(ClientXMPP):
    def __init__(self, args):
        mech = None if args.mechanism in (None, "", "auto") else args.mechanism
        super().__init__(args.jid, args.password, sasl_mech=mech)
        self.args = args
        self.want_mech = mech
        self.outcome = asyncio.get_event_loop().create_future()
        self.used_mech = None
        self.session_started = False

        # We handle subscriptions ourselves; slixmpp's default is to auto-approve and
        # auto-subscribe back, which would hide server behaviour.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False

        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")  # ping
        self.register_plugin("xep_0203")  # delay
        self.register_plugin("xep_0280")  # carbons
        self.register_plugin("xep_0297")  # forwarded

        if args.insecure:
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        elif args.ca_file:
            self.ca_certs = Path(args.ca_file)
        if args.tls_max == "1.2":
            self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2

        # Waiters used by scenarios.
        self.roster_pushes = []
        self.roster_push_waiters = []
        self.subscribed_from = set()
        self.available_from = set()
        self.messages = asyncio.Queue()
        self.carbons = []  # ("sent" | "received", message), in arrival order
        self.subscribe_requests = asyncio.Queue()
        self.state_changed = asyncio.Event()

        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("ssl_invalid_chain", self.on_ssl_invalid)
        self.add_event_handler("tls_success", lambda _e: emit("tls", mode="starttls"))
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("failed_all_auth", self.on_failed_all_auth)
        self.add_event_handler("no_auth", lambda _e: self.fail("no acceptable SASL mechanism offered"))
        self.add_event_handler("auth_success", self.on_auth_success)
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("carbon_sent", self.on_carbon_sent)
        self.add_event_handler("carbon_received", self.on_carbon_received)
        self.add_event_handler("roster_update", self.on_roster_update)
        self.add_event_handler("presence_subscribe", self.on_presence_subscribe)
        self.add_event_handler("presence_subscribed", self.on_presence_subscribed)
        self.add_event_handler("presence_available", self.on_presence_available)

    # --- outcome -----------------------------------------------------------
    def fail(self, reason):
        if not self.outcome.done():
            self.outcome.set_exception(ScenarioFailed(reason))

    def succeed(self):
        if not self.outcome.done():
            self.outcome.set_result(True)

    # --- connection / auth events -----------------------------------------
    def on_connection_failed(self, err):
        self.fail("connection failed: %s" % (err,))

    def on_ssl_invalid(self, err):
        self.fail("TLS certificate not trusted: %s" % (err,))

    def on_failed_auth(self, stanza):
        emit("sasl_failure", mechanism=self["feature_mechanisms"].mech.name
             if self["feature_mechanisms"].mech else None,
             condition=stanza["condition"] if stanza is not None else None)
        self.fail("SASL authentication failed (%s)" % (stanza["condition"] if stanza is not None else "?"))

    def on_failed_all_auth(self, _event):
        offered = sorted(self["feature_mechanisms"].mech_list)
        self.fail("no SASL mechanism succeeded (asked %s, offered %s)" % (self.want_mech, offered))

    def on_auth_success(self, _stanza):
        mech = self["feature_mechanisms"].mech
        self.used_mech = mech.name if mech else None
        tls = {}
        sock = self.socket
        if isinstance(sock, (ssl.SSLSocket, ssl.SSLObject)):
            tls = {"tls_version": sock.version(), "cipher": sock.cipher()[0]}
        offered = sorted(self["feature_mechanisms"].mech_list)
        emit("auth", mechanism=self.used_mech, offered=offered, **tls)
        if self.want_mech and self.used_mech != self.want_mech:
            self.fail("authenticated with %s, wanted %s" % (self.used_mech, self.want_mech))

    def on_stream_error(self, err):
        self.fail("stream error: %s %s" % (err["condition"], err["text"]))

    def on_disconnected(self, reason):
        emit("disconnected", reason=str(reason) if reason else None)
        if not self.session_started:
            self.fail("disconnected before session start (%s)" % (reason,))
        else:
            self.fail("disconnected unexpectedly (%s)" % (reason,))

    async def on_session_start(self, _event):
        self.session_started = True
        emit("bound", jid=str(self.boundjid))
        try:
            await run_scenario(self, self.args)
        except ScenarioFailed as exc:
            self.fail(str(exc))
            return
        except slixmpp.exceptions.IqError as exc:
            self.fail("iq error: %s" % exc.iq["error"]["condition"])
            return
        except slixmpp.exceptions.IqTimeout:
            self.fail("iq timeout")
            return
        except Exception as exc:  # report, do not hang
            self.fail("exception in scenario: %r" % (exc,))
            return
        self.succeed()

    # --- stanza events ------------------------------------------------------
    def on_message(self, msg):
        if not msg["body"]:
            return  # carbons (their body is inside <forwarded/>) have their own events
        delay = msg["delay"]
        stamp = delay["stamp"] if delay.xml.get("stamp") else None
        emit("message", **{"from": str(msg["from"]), "to": str(msg["to"]), "type": msg["type"],
                           "body": msg["body"], "delay": stamp.isoformat() if stamp else None})
        self.messages.put_nowait(msg)

    def on_carbon_sent(self, msg):
        inner = msg["carbon_sent"]
        emit("carbon_sent", **{"outer_from": str(msg["from"]), "from": str(inner["from"]),
                               "to": str(inner["to"]), "body": inner["body"]})
        self.carbons.append(("sent", msg))
        self.state_changed.set()

    def on_carbon_received(self, msg):
        inner = msg["carbon_received"]
        emit("carbon_received", **{"outer_from": str(msg["from"]), "from": str(inner["from"]),
                                   "to": str(inner["to"]), "body": inner["body"]})
        self.carbons.append(("received", msg))
        self.state_changed.set()

    def on_roster_update(self, iq):
        if iq["type"] != "set":
            return  # the result of our own roster get
        for jid, item in iq["roster"]["items"].items():
            rec = {"jid": str(jid), "subscription": item["subscription"], "ask": item["ask"] or None}
            emit("roster_push", **rec)
            self.roster_pushes.append(rec)
        self.state_changed.set()

    def on_presence_subscribe(self, pres):
        emit("presence", type="subscribe", **{"from": str(pres["from"])})
        self.subscribe_requests.put_nowait(pres)

    def on_presence_subscribed(self, pres):
        emit("presence", type="subscribed", **{"from": str(pres["from"])})
        self.subscribed_from.add(pres["from"].bare)
        self.state_changed.set()

    def on_presence_available(self, pres):
        emit("presence", type="available", **{"from": str(pres["from"]), "show": pres["show"] or None})
        self.available_from.add(pres["from"].bare)
        self.state_changed.set()

    # --- helpers --------------------------------------------------------------
    def subscription(self, bare):
        sub = None
        for rec in self.roster_pushes:
            if rec["jid"] == bare:
                sub = rec["subscription"]
        return sub

    async def wait_state(self, pred):
        while not pred():
            self.state_changed.clear()
            await self.state_changed.wait()

    async def roster_get(self):
        """Roster get; reports slixmpp's roster after it (with roster versioning the
        server may answer "unchanged" with an empty result, RFC 6121 section 2.6.3)."""
        iq = await self.get_roster()
        roster = self.client_roster
        me = self.boundjid.bare  # slixmpp keeps an entry for its own JID (self-presence)
        items = {str(j): roster[j]["subscription"] for j in roster
                 if j != me and roster[j]["subscription"] != "remove"}
        emit("roster", items=items, ver=roster.version or None,
             full_result=bool(iq.xml.find("{jabber:iq:roster}query") is not None))
        return items

    async def barrier(self):
        """IQ ping to our server: its result means earlier stanzas were processed."""
        await self["xep_0199"].ping(jid=JID(self.boundjid.domain), timeout=10)


def disable_channel_binding(x):
    """Give SCRAM no channel-binding data, so it sends the gs2 flag 'n' (see above)."""
    fm = x["feature_mechanisms"]
    orig = fm.sasl_callback

    def callback(required, optional):
        creds = orig(required, optional)
        if "channel_binding" in creds:
            creds["channel_binding"] = None
        return creds

    fm.sasl_callback = callback


def need(args, *names):
    missing = [n for n in names if not getattr(args, n)]
    if missing:
        raise ScenarioFailed("scenario %s needs --%s" % (args.scenario, " --".join(missing)))


def bare(j):
    return JID(j).bare


async def run_scenario(x, args):
    sc = args.scenario
    if sc == "login":
        x.send_presence()
        await x.barrier()
        emit("presence_sent")
        return

    if sc == "send":
        need(args, "to", "body")
        x.send_message(mto=JID(args.to), mbody=args.body, mtype="chat")
        await x.barrier()
        emit("sent", to=args.to, body=args.body)
        return

    if sc in ("receive", "offline"):
        need(args, "body")
        x.send_presence()
        emit("ready")
        while True:
            msg = await x.messages.get()
            if args.from_ and msg["from"].bare != bare(args.from_):
                continue
            if msg["body"] != args.body:
                continue
            if sc == "offline" and not msg["delay"].xml.get("stamp"):
                raise ScenarioFailed("message with the body arrived without a XEP-0203 delay element")
            stamp = msg["delay"]["stamp"] if msg["delay"].xml.get("stamp") else None
            emit("received", body=msg["body"], type=msg["type"], to=str(msg["to"]),
                 delay=stamp.isoformat() if stamp else None, **{"from": str(msg["from"])})
            return

    if sc == "subscribe":
        need(args, "to")
        peer = bare(args.to)
        await x.roster_get()
        x.send_presence()

        async def approve_back():
            while True:
                pres = await x.subscribe_requests.get()
                if pres["from"].bare == peer:
                    x.send_presence(pto=peer, ptype="subscribed")
                    emit("approved", jid=peer)

        approver = asyncio.ensure_future(approve_back())
        try:
            x.send_presence_subscription(pto=peer, ptype="subscribe")
            emit("subscribe_sent", to=peer)
            await x.wait_state(lambda: peer in x.subscribed_from and
                               x.subscription(peer) in ("to", "both"))
            emit("subscribed", jid=peer, subscription=x.subscription(peer))
            if args.wait_mutual:
                await x.wait_state(lambda: x.subscription(peer) == "both")
                emit("mutual", jid=peer)
        finally:
            approver.cancel()
        await x.roster_get()
        return

    if sc == "accept":
        await x.roster_get()
        x.send_presence()
        emit("ready")
        want = bare(args.from_) if args.from_ else None
        while True:
            pres = await x.subscribe_requests.get()
            peer = pres["from"].bare
            if want and peer != want:
                continue
            x.send_presence(pto=peer, ptype="subscribed")
            emit("approved", jid=peer)
            if x.subscription(peer) not in ("to", "both"):
                x.send_presence_subscription(pto=peer, ptype="subscribe")
                emit("subscribe_sent", to=peer)
            await x.wait_state(lambda: x.subscription(peer) == "both")
            emit("mutual", jid=peer)
            await x.roster_get()
            return

    if sc == "presence":
        need(args, "from_")
        peer = bare(args.from_)
        x.send_presence()
        emit("ready")
        await x.wait_state(lambda: peer in x.available_from)
        emit("peer_available", jid=peer)
        return

    if sc == "carbons":
        need(args, "body")
        x.send_presence()
        await x["xep_0280"].enable()
        emit("carbons_enabled")
        emit("ready")
        want_sent, want_received = args.body, args.received_body
        while want_sent or want_received:
            await x.wait_state(lambda: x.carbons)
            kind, msg = x.carbons.pop(0)
            inner = msg["carbon_" + kind]
            if msg["from"] != JID(x.boundjid.bare):
                raise ScenarioFailed("%s carbon from %s, not our bare JID" % (kind, msg["from"]))
            if kind == "sent" and inner["body"] == want_sent:
                want_sent = None
            elif kind == "received" and inner["body"] == want_received:
                want_received = None
            else:
                continue
            emit("carbon_ok", kind=kind, body=inner["body"], **{"from": str(inner["from"]),
                                                                "to": str(inner["to"])})
        return

    raise ScenarioFailed("unknown scenario %s" % sc)


def parse_args(argv):
    p = argparse.ArgumentParser(description="slixmpp interop driver (JSON lines on stdout)")
    p.add_argument("--jid", required=True, help="user@domain[/resource]")
    p.add_argument("--password", required=True)
    p.add_argument("--server-host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", choices=("starttls", "direct"), default="starttls")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ca-file", help="PEM file with the server certificate / CA to trust")
    g.add_argument("--insecure", action="store_true", help="accept any certificate")
    p.add_argument("--tls-max", choices=("1.2", "1.3"), default="1.3")
    p.add_argument("--no-channel-binding", action="store_true",
                   help="act as a client without channel binding (gs2 flag 'n' instead of 'y')")
    p.add_argument("--mechanism", default="auto",
                   help="SASL mechanism to force, e.g. SCRAM-SHA-256-PLUS (auto: best offered)")
    p.add_argument("--scenario", required=True, choices=SCENARIOS)
    p.add_argument("--to")
    p.add_argument("--from", dest="from_")
    p.add_argument("--body")
    p.add_argument("--received-body", help="carbons: also wait for a received carbon with this body")
    p.add_argument("--wait-mutual", action="store_true")
    p.add_argument("--timeout", type=float, default=30.0, help="overall timeout in seconds")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    if not args.insecure and not args.ca_file:
        p.error("one of --ca-file or --insecure is required")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    emit("start", scenario=args.scenario, jid=args.jid, server=args.server_host, port=args.port,
         tls=args.tls, mechanism=args.mechanism, slixmpp=slixmpp.__version__)
    x = Driver(args)
    x.init_plugins()
    if args.no_channel_binding:
        disable_channel_binding(x)
    x.connect((args.server_host, args.port), use_ssl=(args.tls == "direct"),
              force_starttls=(args.tls == "starttls"), disable_starttls=(args.tls == "direct"))
    reason = None
    try:
        loop.run_until_complete(asyncio.wait_for(asyncio.shield(x.outcome), args.timeout))
    except asyncio.TimeoutError:
        reason = "timeout after %ss" % args.timeout
    except ScenarioFailed as exc:
        reason = str(exc)
    # Leave cleanly: close the stream and wait a little for the server's </stream>.
    x.del_event_handler("disconnected", x.on_disconnected)
    try:
        fut = x.disconnect(wait=2.0)
        if fut is not None:
            loop.run_until_complete(asyncio.wait_for(fut, 5))
    except Exception:  # already gone, or server did not answer: fine
        pass
    for task in asyncio.all_tasks(loop):
        task.cancel()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    except Exception:
        pass
    if reason is None:
        emit("done", mechanism=x.used_mech)
        print(json.dumps({"result": "ok", "scenario": args.scenario}), flush=True)
        return 0
    print(json.dumps({"result": "fail", "scenario": args.scenario, "reason": reason}), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
