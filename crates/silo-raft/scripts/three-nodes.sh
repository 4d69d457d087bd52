#!/usr/bin/env bash
# Starts a three-node silo-raft cluster on 127.0.0.1 (ports BASE+1..BASE+3,
# directories under ROOT), initializes it, writes and reads one key, and
# leaves the nodes running; stop them with `kill $(cat ROOT/pids)`.
#
#   crates/silo-raft/scripts/three-nodes.sh [ROOT] [BASE]
#
# With SCHEMA=path/to/schema.toml every node gets that index schema
# (`--schema`), for the document calls (`upsert`, `patch`, `query`, ...).
set -euo pipefail
root=${1:-/tmp/silo-raft-cluster}
base=${2:-7100}
target=${CARGO_TARGET_DIR:-target}
cargo build -q -p silo-raft --bin silo-raft
bin="$target/debug/silo-raft"
peers="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 2)),3=127.0.0.1:$((base + 3))"
schema_args=()
key=1
if [ -n "${SCHEMA:-}" ]; then
    schema_args=(--schema "$SCHEMA")
    # Beside an index, user keys lie in 0x8000 << 48 .. 0xFFFE << 48.
    key=9223372036854775809
fi
mkdir -p "$root"
: > "$root/pids"
for id in 1 2 3; do
    "$bin" --id "$id" --dir "$root/node$id" --listen "127.0.0.1:$((base + id))" \
        --peers "$peers" ${schema_args[@]+"${schema_args[@]}"} > /dev/null 2> "$root/node$id.err" &
    echo $! >> "$root/pids"
done
# Wait until node 1 answers, then initialize (an already initialized
# cluster answers with an error, which is fine on a restart).
for _ in $(seq 100); do
    "$bin" client "127.0.0.1:$((base + 1))" status > /dev/null 2>&1 && break
    sleep 0.05
done
"$bin" client "127.0.0.1:$((base + 1))" init "$peers" || true
# Wait for an elected leader (polling: the election's timing is openraft's).
leader=
for _ in $(seq 200); do
    for id in 1 2 3; do
        if "$bin" client "127.0.0.1:$((base + id))" status 2> /dev/null | grep -q '"is_leader":true'; then
            leader=$id
        fi
    done
    [ -n "$leader" ] && break
    sleep 0.05
done
[ -n "$leader" ] || { echo "no leader elected; see $root/node*.err" >&2; exit 1; }
for id in 1 2 3; do "$bin" client "127.0.0.1:$((base + id))" status; done
"$bin" client "127.0.0.1:$((base + leader))" put "$key" hello
"$bin" client "127.0.0.1:$((base + leader))" get "$key"
echo "pids in $root/pids"
