"""The command line of a bench that measures PostgreSQL alone on a scratch database it re-creates."""

from __future__ import annotations

import argparse


def scratch_postgres_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with the two options such benches share: ``--database-url`` (required) and ``--json``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True,
                        help="a PostgreSQL database to drop and re-create (postgresql+psycopg://…)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    return parser


def parse_postgres_args(parser: argparse.ArgumentParser, argv: list[str] | None, what: str) -> argparse.Namespace:
    """The parsed arguments; a URL that is not PostgreSQL's is a usage error (exit 2, one line) saying
    that ``what`` is PostgreSQL's."""
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgresql"):
        parser.error(f"{what} PostgreSQL's: give --database-url postgresql+psycopg://…")
    return args
