"""A leave-on-server POP3 fetcher on Python's poplib, for clients_test.go.

usage: poplib_fetch.py MODE HOST PORT USER CAFILE STATEFILE OUTDIR
MODE is plain, stls (STLS, then verify against CAFILE) or ssl (implicit TLS).
The password comes from the environment variable POP3_PASSWORD.

It lists UIDLs, RETRieves each message whose UIDL is not yet in STATEFILE
into OUTDIR/<n>.eml and appends its UIDL to STATEFILE, then QUITs.
poplib hands back the lines of a message without their CRLF and with the
dot-stuffing removed; they are written joined by CRLF with a final CRLF,
which restores the exact octets of the RETR response.
"""
import os
import poplib
import ssl
import sys


def main():
    mode, host, port, user, cafile, statefile, outdir = sys.argv[1:8]
    port = int(port)
    ctx = ssl.create_default_context(cafile=cafile)
    if mode == "ssl":
        pop = poplib.POP3_SSL(host, port, context=ctx, timeout=30)
    else:
        pop = poplib.POP3(host, port, timeout=30)
        if mode == "stls":
            pop.stls(context=ctx)
        elif mode != "plain":
            sys.exit("unknown mode " + mode)
    pop.user(user)
    pop.pass_(os.environ["POP3_PASSWORD"])

    seen = set()
    if os.path.exists(statefile):
        with open(statefile) as f:
            seen = {line.strip() for line in f if line.strip()}

    _, listing, _ = pop.uidl()
    fetched = []
    for entry in listing:
        num, uidl = entry.decode("ascii").split()
        if uidl in seen:
            continue
        _, lines, _ = pop.retr(int(num))
        with open(os.path.join(outdir, num + ".eml"), "wb") as f:
            f.write(b"\r\n".join(lines) + b"\r\n")
        fetched.append(uidl)
    pop.quit()

    with open(statefile, "a") as f:
        for uidl in fetched:
            f.write(uidl + "\n")
    print("fetched", len(fetched))


if __name__ == "__main__":
    main()
