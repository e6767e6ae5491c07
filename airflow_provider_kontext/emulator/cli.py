"""``kontext-emulator``: run the emulator from a shell, a CI job or a demo script.

``--ready-file`` exists so scripts can start the emulator in the background and simply wait for
a file instead of polling a port; it is written (atomically) only once the server accepts
connections, and contains the base URL.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

__all__ = ["build_parser", "main"]

_API_KEY_ENV = "KONTEXT_EMULATOR_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="kontext-emulator", description="Local kie.ai-compatible Flux Kontext and Market jobs API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind, 0 for any free port (default: 8765)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(_API_KEY_ENV, "emulator-key"),
        help=f"Bearer token to accept (default: ${_API_KEY_ENV} or 'emulator-key')",
    )
    parser.add_argument("--generation-seconds", type=float, default=3.0, help="time until a task finishes")
    parser.add_argument("--record-info-null-seconds", type=float, default=0.5, help="'recordInfo is null' phase")
    parser.add_argument("--credits", type=float, default=1000.0, help="starting credit balance")
    parser.add_argument("--rate-limit-creates", type=int, default=20, help="creates allowed per window")
    parser.add_argument("--rate-limit-window", type=float, default=10.0, help="rate-limit window in seconds")
    parser.add_argument(
        "--other-client-creates",
        type=int,
        default=0,
        help="creates of every window another client of the same account uses (default: 0)",
    )
    parser.add_argument("--webhook-hmac-key", default=None, help="sign callbacks with this HMAC key")
    parser.add_argument("--public-base-url", default=None, help="URL prefix for file URLs in answers")
    parser.add_argument("--time-format", choices=("iso", "epoch_ms"), default="iso", help="createTime format")
    parser.add_argument("--image-long-side", type=int, default=512, help="long side of rendered images")
    parser.add_argument(
        "--market-validation-code",
        type=int,
        choices=(422, 500),
        default=422,
        help="body code of a Market create missing a required input or with a value out of options",
    )
    parser.add_argument(
        "--mirror-http-status", action="store_true", help="send error body codes as the HTTP status too"
    )
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11", help="uvicorn HTTP implementation")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests faulted at random, 0-1 (default: 0)"
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the random faults (default: 0)")
    parser.add_argument("--ready-file", type=Path, default=None, help="write the base URL here once listening")
    return parser


def _write_ready_file(path: Path, base_url: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(base_url + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT/SIGTERM. Returns the process exit code."""
    args = build_parser().parse_args(argv)
    from airflow_provider_kontext.emulator.config import EmulatorConfig
    from airflow_provider_kontext.emulator.server import EmulatorServer

    try:
        config = EmulatorConfig(
            api_key=args.api_key,
            generation_seconds=args.generation_seconds,
            record_info_null_seconds=args.record_info_null_seconds,
            credits=args.credits,
            rate_limit_creates=args.rate_limit_creates,
            rate_limit_window_seconds=args.rate_limit_window,
            webhook_hmac_key=args.webhook_hmac_key,
            public_base_url=args.public_base_url,
            time_format=args.time_format,
            image_long_side=args.image_long_side,
            market_validation_code=args.market_validation_code,
            mirror_http_status=args.mirror_http_status,
        )
    except ValueError as exc:
        print(f"kontext-emulator: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    server = EmulatorServer(config, host=args.host, port=args.port, http=args.http)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        print(f"kontext-emulator: cannot start on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if args.other_client_creates:
        server.share_account(args.other_client_creates)
    if args.fault_rate:
        try:
            server.inject_random_faults(args.fault_rate, args.fault_seed)
        except ValueError as exc:
            server.stop()
            print(f"kontext-emulator: {exc}", file=sys.stderr)
            return 2
    try:
        print(f"kontext-emulator listening on {server.base_url} (api key: {config.api_key})", flush=True)
        if args.ready_file is not None:
            _write_ready_file(args.ready_file, server.base_url)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
