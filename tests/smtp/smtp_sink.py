#!/usr/bin/env python3
"""A real SMTP server for Kontor's tests (aiosmtpd), on loopback.

Every accepted message is written to DIR as NNNNNN.eml (the exact bytes received), with
NNNNNN.json beside it (envelope sender and recipients); every connection's EHLO adds a
line to DIR/sessions.log. Prints `listening 127.0.0.1:PORT`
once ready. Recipients steer the replies, so tests can provoke each case:

  *reject*@...     550 5.1.1 at RCPT (a permanent failure)
  *tempfail*@...   451 4.3.0 at RCPT for the first two attempts, then accepted
  --delay-ms N     every DATA is held N ms before the 250 (a window to kill the client)

Usage: smtp_sink.py --dir DIR [--port 0] [--delay-ms 0]
"""

import argparse
import asyncio
import itertools
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory, delay):
        self.directory = directory
        self.delay = delay
        self.counter = itertools.count(1)
        self.tempfails = {}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # One EHLO per SMTP connection: the tests count connections in sessions.log.
        session.host_name = hostname
        with open(os.path.join(self.directory, "sessions.log"), "a") as f:
            f.write(hostname + "\n")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "reject" in address:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if "tempfail" in address:
            seen = self.tempfails.get(address, 0)
            self.tempfails[address] = seen + 1
            if seen < 2:
                return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay / 1000)
        n = next(self.counter)
        base = os.path.join(self.directory, "%06d" % n)
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".tmp", base + ".eml")
        with open(base + ".json.tmp", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos}, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as %06d" % n


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    handler = Sink(args.dir, args.delay_ms)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", enable_SMTPUTF8=True, decode_data=False),
        host="127.0.0.1",
        port=args.port,
    )
    port = server.sockets[0].getsockname()[1]
    print("listening 127.0.0.1:%d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
