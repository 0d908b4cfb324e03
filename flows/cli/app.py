"""`musika-piano app`: the command that serves the generation page (flows/app/ui.py)."""

from __future__ import annotations

import argparse

from flows.app.listening import user_errors

USER_ERRORS: tuple[type[Exception], ...] = user_errors()
"""Errors that mean "fix your input" (bad folder, base_channels mismatch, unknown model)."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 to 65535, got {text}")
    return value


def cmd_app(args: argparse.Namespace) -> int:
    from flows.app.ui import launch_app

    launch_app(
        args.store, host=args.host, port=args.port, checkpoint=args.checkpoint,
        autoencoder=args.autoencoder, base_channels=args.base_channels,
        open_browser=not args.no_browser,
    )
    return 0


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `app` on the CLI's subcommands."""
    app = commands.add_parser(
        "app", parents=[common],
        help="serve the generation page: pick a model, generate, listen (Gradio, local only)",
    )
    app.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1; 0.0.0.0 serves the network)")
    app.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    app.add_argument("--checkpoint", metavar="FOLDER",
                     help="also offer a checkpoint folder (official .h5 or this trainer's)")
    app.add_argument("--autoencoder", metavar="MODEL_OR_FOLDER",
                     help="autoencoder for --checkpoint: a folder or a store model NAME@V "
                          "(default: the checkpoint folder's enc/dec .h5)")
    app.add_argument("--base-channels", type=positive_int, metavar="N",
                     help="expected base_channels of --checkpoint (checked before serving)")
    app.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    app.set_defaults(func=cmd_app)
