"""A separate process that publishes into a store, for the crash and concurrency tests.

    store_worker.py ROOT publish-slow STARTED_FLAG
    store_worker.py ROOT race TAG ROUNDS READY_FLAG GO_FLAG
    store_worker.py ROOT datasets NAME TAG COUNT KEY READY_FLAG GO_FLAG

Results are printed as one JSON document on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from tasks.store import ArtifactStore, DatasetItem

CHUNK = 1 << 20


def wait_for_go(ready_flag: str, go_flag: str) -> None:
    Path(ready_flag).touch()
    deadline = time.monotonic() + 60
    while not Path(go_flag).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal within 60 s")
        time.sleep(0.001)


def publish_slow(store: ArtifactStore, started_flag: str) -> None:
    """Start writing a large file and keep at it until killed."""
    with store.publish_object("slow", 1, {"size": "large"}, [], item="victim") as staged:
        big_file = staged.dir / "big.bin"
        with big_file.open("wb") as handle:
            for index in range(600):
                handle.write(bytes([index % 251]) * CHUNK)
                handle.flush()
                if index == 0:
                    Path(started_flag).write_text(str(staged.dir))
                time.sleep(0.05)


def race(store: ArtifactStore, tag: str, rounds: int, ready_flag: str, go_flag: str) -> None:
    """Publish the same keys as a rival process; the files carry this writer's tag."""
    wait_for_go(ready_flag, go_flag)
    results = []
    for round_index in range(rounds):
        with store.publish_object("race", 1, {"round": round_index}, [], item="shared") as staged:
            seed = hashlib.sha256(tag.encode()).digest()
            (staged.dir / "big.bin").write_bytes(seed * (4 * CHUNK // len(seed)))
            (staged.dir / "owner.txt").write_text(tag)
            staged.stats["owner"] = tag
        results.append(
            {"key": staged.key, "reused": staged.reused, "manifest": staged.manifest.to_dict()}
        )
    print(json.dumps(results))


def datasets(
    store: ArtifactStore, name: str, tag: str, count: int, key: str, ready_flag: str, go_flag: str
) -> None:
    """Publish ``count`` versions of ``name`` with content distinct from any rival's."""
    wait_for_go(ready_flag, go_flag)
    versions = []
    for index in range(count):
        published = store.publish_dataset(
            name,
            stage="race",
            params={"writer": tag, "index": index},
            items=[DatasetItem(item_id=f"{tag}-{index}", key=key)],
        )
        versions.append({"version": published.version, "created": published.created})
    print(json.dumps(versions))


def main(argv: list[str]) -> None:
    root, command, *rest = argv
    store = ArtifactStore(root)
    if command == "publish-slow":
        publish_slow(store, *rest)
    elif command == "race":
        tag, rounds, ready_flag, go_flag = rest
        race(store, tag, int(rounds), ready_flag, go_flag)
    elif command == "datasets":
        name, tag, count, key, ready_flag, go_flag = rest
        datasets(store, name, tag, int(count), key, ready_flag, go_flag)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
