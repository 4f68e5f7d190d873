#!/usr/bin/env bash
# Starts N processes of one training run on this machine, joined by jax.distributed.
#
#   scripts/launch_local_multiprocess.sh N <train.py arguments>
#   PYTHON=.venv/bin/python scripts/launch_local_multiprocess.sh 2 --config=configs/metaworld_mt10.py --workdir=runs/mt10
#
# Process 0 is the coordinator (127.0.0.1, a free port, or $PORT) and writes the logs; each
# process steps the envs of its share of the tasks. On CPU each process has one device unless
# XLA_FLAGS=--xla_force_host_platform_device_count=K gives it K. The console lines of processes
# other than 0 start with "[process <i>]". SIGTERM or SIGINT goes to every process (they save and
# stop together); if one process fails, the others are killed (they resume from the last checkpoint
# they saved together) and the exit status is the failed one's.
set -u
# bash 5.1 or newer (wait -n -p)
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N <train.py arguments>   (N: the number of processes, at least 1)" >&2
    exit 2
fi
count=$1
shift
python=${PYTHON:-python}
here=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

pids=()
stop_all() {
    kill -s "$1" "${pids[@]}" 2>/dev/null
}
trap 'stop_all TERM' TERM
trap 'stop_all INT' INT

for ((id = 0; id < count; id++)); do
    "$python" "$here/train.py" "$@" --distributed --coordinator_address="127.0.0.1:$port" \
        --num_processes="$count" --process_id="$id" &
    pids+=($!)
done

status=0
running=$count
while [ "$running" -gt 0 ]; do
    finished=
    wait -n -p finished "${pids[@]}"
    code=$?
    [ -z "$finished" ] && continue  # a trapped signal interrupted the wait
    running=$((running - 1))
    for i in "${!pids[@]}"; do
        [ "${pids[$i]}" = "$finished" ] && unset "pids[$i]"
    done
    if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$code
        stop_all KILL  # the others wait for it in vain, and cannot save without it: they end at their last checkpoint
    fi
done
exit "$status"
