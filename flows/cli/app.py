"""`musika-piano app`: the command that serves the generation page (flows/app/ui.py).

Its "fix your input" errors (bad folder, base_channels mismatch, unknown model) are those of
`flows.app.listening.user_errors`, which `flows.cli.commands.is_user_error` asks once the page's
modules are loaded (they load numpy, so they are imported only when the command runs).
"""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter, validators

from flows.cli.options import StoreRoot, Switch


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
    from flows.app.ui import launch_app

    launch_app(store, host=host, port=port, checkpoint=checkpoint, autoencoder=autoencoder,
               base_channels=base_channels, open_browser=not no_browser)
    return 0
