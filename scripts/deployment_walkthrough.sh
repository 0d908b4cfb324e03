#!/usr/bin/env bash
# The deployments end to end on one machine: a Prefect server, the `cpu` and `gpu` process work
# pools and the `gpu` concurrency limit, every deployment of prefect.yaml, a worker per pool, then
# the pipeline as deployment runs whose names chain: a MIDI dataset, its latents, a GAN pretrained
# on them, the fine-tune trigger enabled and started by the dataset's next version (new pieces), the
# fine-tuned model's samples and an evaluation of both models. Training uses the `tiny` preset
# (seconds on a CPU); on a GPU host leave `settings` out to train with the deployments' presets.
#
# From the project root, after `make demo` (it encodes with the demo's autoencoder, demo-ae):
#     bash scripts/deployment_walkthrough.sh
# or type its commands yourself in a shell at the project root (`run NAME PARAMS` below stands for
# `prefect deployment run NAME --params PARAMS --watch`). tests/e2e/test_walkthrough.py runs this
# file in CI, and the README shows it as it is.
#
# Every `prefect deployment run ... --watch` waits for its run and exits 1 when the run fails, which
# stops the script; it then names the run's `prefect flow-run logs <id>` command. The workers run in
# the background and stop when the script ends. A server this script starts keeps running, for the
# UI and the logs; the last lines say how to stop it.
#
# Environment, all optional:
#   PREFECT_API_URL          a running Prefect server to use, e.g. http://127.0.0.1:4200/api; when unset,
#                            the script uses (or starts) one on 127.0.0.1:$PREFECT_SERVER_API_PORT
#   PREFECT_SERVER_API_PORT  the port of that local server; default 4200
#   PREFECT_HOME             Prefect's local state, a started server's database too; default ~/.prefect
#   MUSIKA_PIANO_DATA        the store the workers read and write; default data/store/, where `make demo` put it
#   AUTOENCODER              the model to encode with; default demo-ae, or official weights imported
#                            with `musika-piano import-musika DIR --name NAME`
#   WALKTHROUGH_LOGS         the folder for the server's and the workers' logs; default a new temporary one
set -euo pipefail

[ -f prefect.yaml ] || { echo "run this from the project root (where prefect.yaml is)" >&2; exit 2; }
[ -d .venv ] && source .venv/bin/activate
AUTOENCODER="${AUTOENCODER:-demo-ae}"
LOGS="${WALKTHROUGH_LOGS:-$(mktemp -d -t musika-walkthrough.XXXXXX)}"
mkdir -p "$LOGS"
workers=()
server_note=""
finish() {  # at exit: stop the workers (a worker stops on SIGTERM; a second SIGTERM kills it)
    if [ ${#workers[@]} -gt 0 ]; then
        kill "${workers[@]}" 2> /dev/null || true
        for second in $(seq 30); do
            kill -0 "${workers[@]}" 2> /dev/null || break
            sleep 1
        done
        kill "${workers[@]}" 2> /dev/null || true
        wait "${workers[@]}" 2> /dev/null || true
    fi
    echo "logs of the server and the workers: $LOGS"
    [ -z "$server_note" ] || echo "$server_note"
}
trap finish EXIT

# 1. The server.
if [ -z "${PREFECT_API_URL:-}" ]; then
    port="${PREFECT_SERVER_API_PORT:-4200}"
    export PREFECT_API_URL="http://127.0.0.1:$port/api"
    if ! python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "$PREFECT_API_URL/health" 2>/dev/null; then
        prefect server start --host 127.0.0.1 --port "$port" > "$LOGS/server.log" 2>&1 &
        server_note="the server is still running (pid $!; UI http://127.0.0.1:$port): in another shell,
    export PREFECT_API_URL=$PREFECT_API_URL   to use it, kill $!   to stop it"
    fi
fi
for attempt in $(seq 90); do
    python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "$PREFECT_API_URL/health" 2>/dev/null && break
    [ "$attempt" -lt 90 ] || { echo "no Prefect server answers at $PREFECT_API_URL" >&2; exit 1; }
    sleep 2
done

# 2. The work pools and the `gpu` limit (made once, kept when they exist), then every deployment.
prefect work-pool inspect cpu > /dev/null 2>&1 || prefect work-pool create cpu --type process
prefect work-pool inspect gpu > /dev/null 2>&1 || prefect work-pool create gpu --type process
prefect gcl inspect gpu > /dev/null 2>&1 || prefect gcl create gpu --limit 1
prefect --no-prompt deploy --all
# The weekly YouTube refresh is registered with its schedule paused (set its sources first):
prefect deployment schedule ls refresh-youtube-dataset/youtube-refresh

# 3. A process worker per pool, in the background (on a GPU host, the `gpu` worker runs there).
# Job control (set -m) gives each its own process group with Ctrl-C and SIGTERM working: a
# background command of a script otherwise ignores SIGINT, which is how a worker stops itself.
set -m
prefect worker start --pool cpu --install-policy never > "$LOGS/worker-cpu.log" 2>&1 &
workers+=($!)
prefect worker start --pool gpu --install-policy never > "$LOGS/worker-gpu.log" 2>&1 &
workers+=($!)
set +m

# 4. The runs. `run DEPLOYMENT PARAMS` starts a run of DEPLOYMENT, follows its logs until it ends,
# and stops the walkthrough when it did not complete.
run() {
    prefect deployment run "$1" --params "$2" --watch | tee "$LOGS/last-run.txt" || {
        echo "the run of $1 did not complete; its logs:" \
            "prefect flow-run logs $(sed -n 's/.*UUID: \([0-9a-f-]*\).*/\1/p' "$LOGS/last-run.txt")" >&2
        exit 1
    }
}
run build-midi-dataset/midi-dataset '{"name": "my-piano", "sources": ["data/demo/midi"]}'
run encode-dataset/encode "{\"dataset\": \"my-piano\", \"autoencoder\": \"$AUTOENCODER\"}"
run pretrain/pretrain '{"datasets": ["my-piano-latents"], "name": "my-gan",
    "settings": {"preset": "tiny", "publish_every": 1}}'

# 5. Fine-tune on new data: register `finetune` again with its trigger enabled for my-piano-latents
# (prefect.yaml ships it disabled, and `prefect deploy --all` puts that back). Each new version of
# my-piano-latents then fine-tunes my-gan on it, replaying 20% of my-gan's own data, into my-gan-ft.
# By hand, the same run: prefect deployment run finetune/finetune --watch --params
#   '{"parent": "my-gan", "datasets": ["my-piano-latents@2"], "name": "my-gan-ft", "settings": {"preset": "tiny"}}'
prefect --no-prompt deploy --name finetune --trigger '{"type": "event", "enabled": true,
    "match": {"prefect.resource.id": "musika.dataset.my-piano-latents"},
    "expect": ["musika.dataset.published"],
    "parameters": {"datasets": "{{ event.payload.ref }}", "parent": "my-gan", "name": "my-gan-ft",
                   "settings": {"preset": "tiny", "publish_every": 1}}}'
# New pieces arrive: the next version of my-piano, encoded, is the next version of my-piano-latents.
run build-midi-dataset/midi-dataset '{"name": "my-piano", "sources": ["data/demo/midi", "data/demo/midi-b"]}'
run encode-dataset/encode "{\"dataset\": \"my-piano\", \"autoencoder\": \"$AUTOENCODER\"}"
# Follow the fine-tune the trigger started on that version (the server starts it seconds after the event).
latest="my-piano-latents@$(musika-piano dataset show my-piano-latents --json |
    python -c 'import json, sys; print(json.load(sys.stdin)["version"])')"
for attempt in $(seq 60); do
    triggered=$(prefect flow-run ls --flow-name finetune --output json | python -c '
import json, sys
print(next((run["id"] for run in json.load(sys.stdin) if run["parameters"].get("datasets") == sys.argv[1]), ""))
' "$latest")
    [ -z "$triggered" ] || break
    [ "$attempt" -lt 60 ] || { echo "the trigger started no fine-tune on $latest" >&2; exit 1; }
    sleep 5
done
prefect flow-run watch "$triggered" || { echo "the fine-tune did not complete; its logs:" \
    "prefect flow-run logs $triggered" >&2; exit 1; }

# 6. Listen and judge: samples of the fine-tuned model, and both models measured against the data.
run generate-samples/generate '{"model": "my-gan-ft", "seconds": 10, "count": 2}'
run evaluate/evaluate '{"checkpoints": ["my-gan", "my-gan-ft"], "reference": "my-piano",
    "settings": {"samples": 2, "seconds": 5, "reference_items": 2}}'
musika-piano dataset ls
