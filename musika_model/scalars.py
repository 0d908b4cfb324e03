"""TensorBoard scalars without TensorFlow: event files written with the standard library, so a
run on the JAX backend (or on a host without TensorFlow or tensorboard) logs the same curves.

An event file is a sequence of TFRecord records (little-endian uint64 length, masked CRC-32C of
the length, the bytes, masked CRC-32C of the bytes), each an `Event` protocol buffer: a first
one naming the file version, then one per step holding a `Summary` of `simple_value` scalars,
which TensorBoard's scalar dashboard reads. The few fields needed are encoded by hand here:
event.proto fields wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
summary = 5; summary.proto Summary.value = 1, Value.tag = 1, Value.simple_value = 2 (float).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int = 0, *, file_version: str | None = None,
           scalars: dict[str, float] | None = None) -> bytes:
    event = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        event += _length_delimited(3, file_version.encode())
    if scalars:
        values = b"".join(
            _length_delimited(1, _length_delimited(1, tag.encode()) + _varint(2 << 3 | 5)
                              + struct.pack("<f", value))
            for tag, value in scalars.items()
        )
        event += _length_delimited(5, values)
    return event


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


class ScalarWriter:
    """Appends scalars to one event file in `folder` (created on the first write)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._file = None

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            now = time.time()
            name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.musika"
            self._file = open(self.folder / name, "ab")  # noqa: SIM115 - kept open for the run
            self._file.write(_record(_event(now, file_version="brain.Event:2")))
        self._file.write(_record(_event(time.time(), step, scalars=scalars)))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
