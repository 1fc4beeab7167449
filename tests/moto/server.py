"""Starts moto's server for the test suite, on 127.0.0.1:<port>.

Two differences from `moto_server`:
- Requests are handled one at a time. Moto's DynamoDB transactions are not thread-safe
  (a transaction checks its conditions, then writes, with no lock), while DynamoDB's are
  serializable; serializing requests gives tests DynamoDB's semantics.
- The server exits when the process that started it exits, so a test run never leaves an
  emulator behind.
"""

import os
import sys
import threading
import time

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    parent = os.getppid()
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
