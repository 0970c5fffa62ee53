"""Entry point of the console script `destination-redis` and of `python main.py`.

The CLI never imports the Airbyte CDK (over a second of imports), and each command
imports what it needs when it needs it: `spec` reads spec.json and nothing else, `check` and
`write` load the config models, the connection and (for `write`) the loader. The protocol lines
are built in protocol.py; `DestinationRedis` stays the CDK-facing library API.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from destination_redis import protocol, secrets
from destination_redis.errors import ConnectorError, config_error
from destination_redis.logs import init_logging


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The commands and flags of the CDK's `Destination.parse_args`: spec; check --config;
    write --config --catalog. Usage errors exit with status 2, as argparse (and the CDK) do."""
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(title="commands", dest="command")
    commands.add_parser("spec", help="outputs the json configuration specification")
    check = commands.add_parser("check", help="checks the config can be used to connect")
    check.add_argument_group("required named arguments").add_argument(
        "--config", type=str, required=True, help="path to the json configuration file"
    )
    write = commands.add_parser("write", help="Writes data to the destination")
    required = write.add_argument_group("required named arguments")
    required.add_argument("--config", type=str, required=True, help="path to the JSON configuration file")
    required.add_argument(
        "--catalog", type=str, required=True, help="path to the configured catalog JSON file"
    )
    return parser.parse_args(argv)


def execute(args: argparse.Namespace, out: TextIO) -> None:
    """Run one command, writing its protocol lines to `out`; a known failure raises ConnectorError.

    The config file is read and validated here, the same way for check and write, so a mistake
    gets the same message from both; its secrets are registered for redaction before anything
    could print them.
    """
    if args.command == "spec":
        protocol.emit([protocol.spec_line()], out)
        return
    if args.command not in ("check", "write"):
        raise config_error(
            "No command entered: use spec, check --config FILE, or write --config FILE --catalog FILE."
        )
    from destination_redis.config import load_config_file, parse_config

    raw_config = load_config_file(args.config)
    secrets.register(secrets.secret_values(protocol.connection_specification(), raw_config))
    if args.command == "check":
        from destination_redis.check import CheckResult, run_check

        try:
            result = run_check(parse_config(raw_config))
        except ConnectorError as exc:  # an invalid config: check answers FAILED, as it always did
            result = CheckResult(False, exc.message)
        protocol.emit([protocol.connection_status_line(result.ok, secrets.redact(result.message))], out)
        return
    from destination_redis.catalog import load_catalog
    from destination_redis.sync import read_lines, write_lines

    config = parse_config(raw_config)
    streams = load_catalog(args.catalog)
    protocol.emit(write_lines(config, streams, read_lines(sys.stdin.buffer)), out)


def run(argv: list[str] | None = None) -> None:
    """Run the command in `argv` (default: the process's arguments); exit 1 after a failure,
    having written one TRACE error message for it."""
    out = sys.stdout
    logger = init_logging(out)
    try:
        execute(parse_args(sys.argv[1:] if argv is None else argv), out)
    except ConnectorError as exc:
        logger.error(exc.message)
        protocol.emit([protocol.error_trace_line(exc)], out)
        sys.exit(1)
    except Exception as exc:  # a bug: logged with its traceback, and a system_error for the platform
        logger.fatal(exc, exc_info=exc)
        protocol.emit([protocol.error_trace_line(exc)], out)
        sys.exit(1)


if __name__ == "__main__":
    run()
