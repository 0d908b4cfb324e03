"""`musika-piano app`: the command that serves the generation page (flows/app/ui.py).

Its "fix your input" errors (bad folder, base_channels mismatch, unknown model) are those of
`flows.app.listening.user_errors`, which `flows.cli.commands.is_user_error` asks once the page's
modules are loaded (they load numpy, so they are imported only when the command runs).
"""

from __future__ import annotations

import errno
import socket
from typing import Annotated

from cyclopts import Parameter, validators

from flows.cli.options import StoreRoot, Switch


class PortInUse(OSError):
    """The page's port is taken: a user error (`flows.cli.commands._USER_ERRORS`)."""


def check_port(host: str, port: int) -> None:
    """Bind `host:port` once and let go, so a taken port is one line naming --port rather than
    Gradio's traceback (port 0 lets the system pick, and is never taken)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(f"port {port} on {host} is in use; pick another with --port") from None


def serve_app(*, host: str = "127.0.0.1",
              port: Annotated[int, Parameter(validator=validators.Number(gte=0, lte=65535))] = 7860,
              checkpoint: Annotated[str | None, Parameter(metavar="FOLDER")] = None,
              autoencoder: Annotated[str | None, Parameter(metavar="MODEL_OR_FOLDER")] = None,
              base_channels: Annotated[int | None, Parameter(validator=validators.Number(gte=1))] = None,
              no_browser: Switch = False, store: StoreRoot = None) -> int:
    """Serve the generation page: pick a model, generate, listen (Gradio, local only).

    Parameters
    ----------
    host
        Address to listen on (0.0.0.0 serves the network).
    port
        Port (0 to 65535).
    checkpoint
        Also offer a checkpoint folder (official .h5 or this trainer's).
    autoencoder
        Autoencoder for --checkpoint: a folder or a store model NAME@V (default: the checkpoint
        folder's enc/dec .h5).
    base_channels
        Expected base_channels of --checkpoint (checked before serving).
    no_browser
        Do not open a browser tab.
    """
    check_port(host, port)
    from flows.app.ui import launch_app

    launch_app(store, host=host, port=port, checkpoint=checkpoint, autoencoder=autoencoder,
               base_channels=base_channels, open_browser=not no_browser)
    return 0
