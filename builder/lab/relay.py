"""A small TCP relay: 127.0.0.1 ports on the host forwarded to the load balancer's address.

This is how the host reaches the lab (`psql -h 127.0.0.1 -p 5000`): the relay listens on
127.0.0.1 only and connects only to addresses inside the lab network, which `lab up` has
checked route via the lab bridge before starting it. One connection to the LB per client
connection; when either side closes, both are closed (so HAProxy's shutdown-sessions reaches
the client). Runs as its own process: `python -m builder.lab.relay --cidr CIDR
127.0.0.1:5000=10.77.0.10:5000 ...` (started by builder.lab.lab with subprocess.Popen).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from collections.abc import Awaitable, Callable


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _handler(host: str, port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                              Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=3)
        except (TimeoutError, OSError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


def parse(spec: str, cidr: ipaddress.IPv4Network) -> tuple[str, int, str, int]:
    listen, _, target = spec.partition("=")
    lhost, _, lport = listen.rpartition(":")
    thost, _, tport = target.rpartition(":")
    if not ipaddress.IPv4Address(lhost).is_loopback:
        raise SystemExit(f"relay: listen address {lhost} is not a loopback address")
    if ipaddress.IPv4Address(thost) not in cidr:
        raise SystemExit(f"relay: target {thost} is not in the lab network {cidr}")
    return lhost, int(lport), thost, int(tport)


async def serve(specs: list[tuple[str, int, str, int]]) -> None:
    servers = [await asyncio.start_server(_handler(th, tp), lh, lp, reuse_address=True)
               for lh, lp, th, tp in specs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("relay: ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="builder.lab.relay")
    parser.add_argument("--cidr", required=True, help="the lab network; targets must be in it")
    parser.add_argument("forward", nargs="+", help="LISTEN_HOST:PORT=TARGET_HOST:PORT")
    args = parser.parse_args(argv)
    cidr = ipaddress.IPv4Network(args.cidr)
    asyncio.run(serve([parse(s, cidr) for s in args.forward]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
