"""`musika-piano serve`: the store's files over HTTP, read-only (tasks/store/serve.py), so the
links of Prefect artifacts open in a browser once `MUSIKA_PIANO_PUBLIC_URL` names this server
(tasks/store/links.py)."""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import Parameter, validators

from flows.cli.app import PortInUse, check_port
from flows.cli.options import StoreRoot
from tasks.store import ENV_STORE_ROOT, ArtifactStore
from tasks.store.links import ENV_PUBLIC_URL, public_url
from tasks.store.serve import StoreServer

DEFAULT_PORT = 8765


class ServeError(ValueError):
    """The store cannot be served as asked: a user error (`flows.cli.commands._USER_ERRORS`)."""


def serve_command(*, host: str = "127.0.0.1",
                  port: Annotated[int, Parameter(validator=validators.Number(gte=0, lte=65535))] = DEFAULT_PORT,
                  store: StoreRoot = None) -> int:
    """Serve the store's reports, audio, images and manifests read-only over HTTP, so that
    artifact links open in a browser (set MUSIKA_PIANO_PUBLIC_URL to the address printed).

    Parameters
    ----------
    host
        Address to listen on (0.0.0.0 serves the network: whoever reaches it reads the store).
    port
        Port (0 to 65535; 0 picks a free one).
    """
    opened = ArtifactStore.open(store)
    if not opened.is_local:
        raise ServeError(f"serve needs a local store; {opened.root} is not local (its links stay "
                         "URIs to copy)")
    root = opened.backend.path("")
    if not root.is_dir():
        raise ServeError(f"no store at {root}: nothing to serve (--store, {ENV_STORE_ROOT})")
    configured = public_url()  # a malformed setting is refused before anything listens
    try:
        check_port(host, port)
        server = StoreServer(root, host, port, log=lambda line: print(line, file=sys.stderr, flush=True))
    except PortInUse:
        raise
    except OSError as error:  # an address this machine does not have, a host name that does not resolve
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                         "pick another --host") from None
    print(f"serving {root} read-only at {server.url}/ (Ctrl-C stops)", flush=True)
    reachable = server.url if host not in ("0.0.0.0", "::") else f"http://<this host>:{server.server_port}"
    if configured != server.url:
        print(f"artifact links point here once {ENV_PUBLIC_URL}={reachable} is set where the flows run"
              + (f" (it is {configured} now)" if configured else ""), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
