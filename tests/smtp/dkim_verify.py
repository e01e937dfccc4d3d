#!/usr/bin/env python3
"""Verifies the DKIM signature of a message with dkimpy, an implementation independent of
the one that signed it. The public key record is given instead of looked up in DNS.

Usage: dkim_verify.py MESSAGE.eml "v=DKIM1; k=ed25519; p=..."
Prints `pass` (exit 0) or `fail: reason` (exit 1).
"""

import sys

import dkim


def main():
    path, record = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        message = f.read()

    def dns(name, timeout=5):
        return record.encode()

    verifier = dkim.DKIM(message)
    try:
        ok = verifier.verify(dnsfunc=dns)
    except dkim.DKIMException as e:
        print("fail: %s" % e)
        return 1
    if ok:
        print("pass")
        return 0
    print("fail: signature does not verify")
    return 1


if __name__ == "__main__":
    sys.exit(main())
