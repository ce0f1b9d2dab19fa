"""Log benchmark (same as `ledger bench log`): prints a table and writes bench/log.json."""

import sys

from evidence_ledger.ledger_api.cli import app

if __name__ == "__main__":
    app(["bench", "log", *sys.argv[1:]])
