"""Starts moto's server for the test suite, on 127.0.0.1:<port>.

Three differences from `moto_server`:
- Requests are handled one at a time. Moto's DynamoDB transactions are not thread-safe
  (a transaction checks its conditions, then writes, with no lock), while DynamoDB's are
  serializable; serializing requests gives tests DynamoDB's semantics.
- The server exits when the process that started it exits, so a test run never leaves an
  emulator behind.
- A failed transaction is rolled back from a snapshot of the item maps of the tables it
  touches, where moto deep-copies every item of those tables first: about 5 ms per stored
  item, which made a 78-item transaction on 1,000-item tables take 15 seconds. For the
  operations this project's transactions use (Put, Delete, ConditionCheck: items are
  replaced or removed, never changed in place) the snapshot restores exactly the same
  state. The patch is applied only to the pinned moto version it was checked against.
"""

import copy
import os
import sys
import threading
import time
from collections import defaultdict

import moto
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

PATCHED_VERSION = "5.2.5"


class _SnapshotTables:
    """The `copy` module as moto's DynamoDB backend sees it."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            snapshot = copy.copy(value)
            snapshot.items = defaultdict(
                dict,
                {key: dict(entry) if isinstance(entry, dict) else entry for key, entry in value.items.items()},
            )
            return snapshot
        return copy.deepcopy(value, memo)


def main() -> None:
    port = int(sys.argv[1])
    parent = os.getppid()
    if moto.__version__ == PATCHED_VERSION:
        dynamodb_models.copy = _SnapshotTables
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    def exit_with_parent():
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    run_simple("127.0.0.1", port, serialized, threaded=True)


if __name__ == "__main__":
    main()
