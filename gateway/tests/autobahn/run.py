#!/usr/bin/env python3
"""Runs the Autobahn "fuzzingclient" cases against a WebSocket echo server with kosoku.

    python3 run.py --url ws://127.0.0.1:PORT/test/echo --out results.json [--cases PATTERN]

Writes {case_id: behavior} to --out and prints a one-line summary; exits 0 whatever the
verdicts (the comparison with baseline.json is done elsewhere). Needs `pip install kosoku==0.1.0`.

The cases run in a worker process (this script with --worker), one kosoku call per case, each
printing one JSON line. A case that prints nothing within --timeout seconds, or whose worker
dies, is recorded as FAILED; the worker is killed and a new one goes on with the next case
(kosoku has no opening-handshake timeout and does not stop a cancelled case by itself).
"""

import argparse
import asyncio
import collections
import fnmatch
import ipaddress
import json
import os
import sys
import time
from urllib.parse import urlsplit

# permessage-deflate is not implemented by the gateway.
EXCLUDED = ("12.*", "13.*")
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")


def verdict(behavior, close):
    """The case's behaviour, made FAILED when its closing handshake failed (as kosoku's `passed`)."""
    if behavior == "ERROR" or (behavior in PASSING and close not in PASSING):
        return "FAILED"
    return behavior


async def worker(url, case_ids):
    from kosoku import FailureError, run_fuzzingclient

    for case_id in case_ids:
        try:
            results = await run_fuzzingclient(url, [case_id])
        except FailureError as failure:
            results = failure.results
        r = results[0]
        line = {
            "id": case_id,
            "behavior": r.behavior.value,
            "close": r.behavior_close.value,
            "remote_close_code": r.remote_close_code,
            "result": r.result,
        }
        print(json.dumps(line), flush=True)


async def run(url, case_ids, timeout):
    """Runs the cases in worker processes; returns {case_id: worker line}."""
    results, pending = {}, list(case_ids)
    while pending:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", "--url", url, *pending,
            stdout=asyncio.subprocess.PIPE,
        )
        while pending:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            except asyncio.TimeoutError:
                line = b""
                why = f"no result within {timeout:g} s"
            else:
                why = "the worker died"
            case_id = pending.pop(0)
            if not line:
                results[case_id] = {"behavior": "FAILED", "close": "FAILED", "result": why}
                break
            results[case_id] = json.loads(line)
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    return results


def select(patterns):
    from kosoku.cases import CASES  # importing the case index starts no runtime

    def matches(case_id, globs):
        return any(fnmatch.fnmatchcase(case_id, g) for g in globs)

    return [c for c in CASES if matches(c, patterns) and not matches(c, EXCLUDED)]


def check_loopback(url):
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if urlsplit(url).scheme != "ws" or not loopback:
        sys.exit(f"run.py: only ws:// URLs on a loopback address are allowed, not {url!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="e.g. ws://127.0.0.1:PORT/test/echo")
    p.add_argument("--out", help="where to write {case_id: behavior} as JSON")
    p.add_argument("--cases", default="*", help="comma-separated globs, e.g. '1.*,7.3.6' (default all)")
    p.add_argument("--timeout", type=float, default=60, help="seconds one case may take (default 60)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("case_ids", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    check_loopback(args.url)

    if args.worker:
        asyncio.run(worker(args.url, args.case_ids))
        # kosoku's runtime can abort at interpreter shutdown: leave without it.
        os._exit(0)
    if not args.out:
        p.error("--out is required")

    case_ids = select([g.strip() for g in args.cases.split(",") if g.strip()])
    if not case_ids:
        sys.exit(f"run.py: no case matches {args.cases!r}")
    started = time.monotonic()
    results = asyncio.run(run(args.url, case_ids, args.timeout))
    behaviors = {c: verdict(r["behavior"], r["close"]) for c, r in results.items()}
    with open(args.out, "w") as f:
        json.dump(behaviors, f, indent=1)
        f.write("\n")

    for c, r in results.items():
        if behaviors[c] != "OK":
            print(f"  {c}: {behaviors[c]} (behavior {r['behavior']}, close {r['close']}, "
                  f"close code {r.get('remote_close_code')}): {r['result']}", file=sys.stderr)
    counts = collections.Counter(behaviors.values())
    summary = ", ".join(f"{counts[b]} {b}" for b in sorted(counts, key=lambda b: -counts[b]))
    print(f"autobahn: {len(behaviors)} cases in {time.monotonic() - started:.1f} s: {summary}")


if __name__ == "__main__":
    main()
