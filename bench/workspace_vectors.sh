#!/usr/bin/env bash
# Workspace vectors through the real services: fill time, a re-index after one changed file,
# and search latency with vectors on and off (docs/benchmarks.md, workspaces, session 10).
#
#   bench/workspace_vectors.sh MODEL_DIR [PATH ...]    # default PATHs: cerebrum/workspace cerebrum/orchestrator
#
# MODEL_DIR: what `bench/embedding_model.sh MODEL_DIR` made (all-MiniLM-L6-v2 as a GGUF and
# its models.toml). Starts the backend serving it with a context of 128 tokens (as the
# retrieval bench embeds, and as docs/workspaces.md recommends), one orchestrator with
# CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL set and one without on the same workspace directory,
# indexes a copy of PATHs at HEAD, waits for every unit's vector, changes one file, and
# asks 40 commit subjects on each orchestrator. Everything under /work/bin/polite if present.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL_DIR="$(realpath "${1:?usage: $0 MODEL_DIR [PATH ...]}")"; shift
if [ $# -gt 0 ]; then PATHS=("$@"); else PATHS=(cerebrum/workspace cerebrum/orchestrator); fi
cd "$ROOT" || exit 1
PY="${PYTHON:-$ROOT/.venv/bin/python}"
POLITE=$([ -x /work/bin/polite ] && echo /work/bin/polite || echo)
export PYTHONPATH=$ROOT
WORK="$(mktemp -d)"; B=59481; O=59482; L=59483
mkdir -p "$WORK/repo"
git archive HEAD "${PATHS[@]}" | tar -x -C "$WORK/repo"
sed 's/^context_size = .*/context_size = 128/' "$MODEL_DIR/models.toml" > "$WORK/models.toml"
CEREBRUM_MODELS="$WORK/models.toml" CEREBRUM_THREADS=2 CEREBRUM_MAX_CPU_PERCENT=100000 CEREBRUM_MIN_FREE_RAM_MB=0 \
  $POLITE "$PY" -m cerebrum.backend --dev --port $B --env-file /dev/null > "$WORK/backend.log" 2>&1 &
BPID=$!
CEREBRUM_BACKEND_URL=http://127.0.0.1:$B CEREBRUM_WORKSPACE_DIR="$WORK/ws" CEREBRUM_LOG_JSON=1 \
  CEREBRUM_WORKSPACE_EMBEDDINGS_MODEL=all-minilm-l6-v2 \
  $POLITE "$PY" cm4_app.py --port $O --env-file /dev/null > "$WORK/vectors.log" 2>&1 &
OPID=$!
CEREBRUM_BACKEND_URL=http://127.0.0.1:$B CEREBRUM_WORKSPACE_DIR="$WORK/ws" \
  $POLITE "$PY" cm4_app.py --port $L --env-file /dev/null > "$WORK/lexical.log" 2>&1 &
LPID=$!
trap 'kill $BPID $OPID $LPID 2>/dev/null; rm -rf "$WORK"' EXIT
for port in $B $O $L; do
  for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 1; done
done
index() { CEREBRUM_URL=http://127.0.0.1:$O $POLITE "$PY" -m cerebrum.cli.main index "$WORK/repo" --name bench; }
filled() {  # wait until every embeddable unit has a vector; print how long since $1
  "$PY" - "$1" <<PYTHON
import json, sys, time, urllib.request
while True:
    with urllib.request.urlopen("http://127.0.0.1:$O/v1/workspaces/bench") as r:
        d = json.loads(r.read())
    if d["vectors"] == d["embeddable"]:
        break
    time.sleep(0.5)
print(f"vectors for {d['vectors']} of {d['embeddable']} units, {time.time() - float(sys.argv[1]):.1f} s after the index run began")
PYTHON
}
latency() {
  "$PY" - "$1" <<'PYTHON'
import json, statistics, subprocess, sys, time, urllib.request
subjects = subprocess.run(["git", "log", "--format=%s", "-n", "40"], capture_output=True, text=True).stdout.splitlines()
wall, alone, used = [], [], 0
for question in subjects:
    started = time.perf_counter()
    request = urllib.request.Request(f"{sys.argv[1]}/v1/workspaces/bench/search", method="POST",
                                     data=json.dumps({"query": question}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        answer = json.loads(r.read())
    wall.append((time.perf_counter() - started) * 1000)
    alone.append(answer["elapsed_ms"])
    used += answer["vectors"]
def show(values):
    values = sorted(values)
    return f"median {statistics.median(values):.1f} ms, p90 {values[int(len(values) * 0.9)]:.1f} ms"
print(f"{len(wall)} questions, vectors used in {used}: wall {show(wall)}; retrieval alone {show(alone)}")
PYTHON
}
now() { "$PY" -c 'import time; print(time.time())'; }
t0=$(now); index; filled "$t0"
echo "--- one file changed (a function added, a docstring edited)"
CHANGED="$(git -C "$ROOT" ls-files "${PATHS[@]}" | grep '\.py$' | head -1)"
printf '\n\ndef added_for_the_measurement():\n    return 1\n' >> "$WORK/repo/$CHANGED"
sed -i '0,/"""/s//"""Edited. /' "$WORK/repo/$CHANGED"
t0=$(now); index; filled "$t0"
grep '"event": "vectors"' "$WORK/vectors.log" | "$PY" -c 'import json, sys; [print("fill:", json.loads(l)["msg"]) for l in sys.stdin]'
echo "--- search, vectors on (the question embedded each time)"; latency http://127.0.0.1:$O
echo "--- search, the same workspace, vectors off"; latency http://127.0.0.1:$L
echo "--- RSS (kB), vectors on then off"; ps -o rss= -p $OPID -p $LPID
