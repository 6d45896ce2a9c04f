#!/usr/bin/env bash
# Stage two under DeepSpeed ZeRO-2, on a SLURM allocation or on one machine.
#
#   sbatch launch/train.sh --backbone af3 --corpus data/train --out runs/af3      # SLURM, every GPU of every node
#   bash launch/train.sh --backbone tiny-qwen2-audio --corpus data/train --out runs/tiny   # one machine
#
# Every argument is a `coat-pipe train` option and passes through unchanged; --resume is always added,
# so a requeued or re-submitted job continues from RUN/checkpoints/latest. Activate the environment
# that has `coat-pipe` before submitting (sbatch exports it to the job).
#
# On SLURM one task per GPU is started by srun itself (RANK = SLURM_PROCID, LOCAL_RANK =
# SLURM_LOCALID, WORLD_SIZE = SLURM_NTASKS); nodes may hold different numbers of tasks. SLURM warns
# the job 5 minutes before its time limit (SIGUSR1): every rank checkpoints at the next step and the
# job requeues itself. On preemption (SIGTERM) the ranks checkpoint the same way and SLURM requeues.
#
#SBATCH --job-name=coat-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -euo pipefail

readonly EXIT_INTERRUPTED=75  # coat-pipe train: stopped at a checkpoint on a signal (stages/train/stop_signal.py)

run_dir=""
previous=""
for arg in "$@"; do
  case $arg in
    --out=*) run_dir=${arg#--out=} ;;
    *) [[ $previous == --out ]] && run_dir=$arg ;;
  esac
  previous=$arg
done
if [[ -z $run_dir ]]; then
  echo "launch/train.sh: pass --out RUN_DIR, the run to start or to resume" >&2
  exit 2
fi
mkdir -p "$run_dir"

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if ((gpus == 0)); then
  export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}  # DeepSpeed on CPU ranks with gloo
fi

# --- one machine: DeepSpeed's own launcher, one rank per GPU (or COAT_CPU_RANKS CPU ranks) ----------
if [[ -z ${SLURM_JOB_ID:-} ]]; then
  ranks=$gpus
  ((ranks > 0)) || ranks=${COAT_CPU_RANKS:-2}
  exec deepspeed --num_gpus "$ranks" --master_port "${MASTER_PORT:-29500}" --no_python \
    coat-pipe train "$@" --resume
fi

# --- SLURM: rendezvous from the allocation -----------------------------------------------------------
mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
export MASTER_ADDR=${hosts[0]}
export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}

# SLURM_TASKS_PER_NODE reads like "8(x2),4": expand it to one count per host.
counts=()
IFS=, read -ra groups <<<"${SLURM_TASKS_PER_NODE:?the allocation gives no SLURM_TASKS_PER_NODE}"
for group in "${groups[@]}"; do
  if [[ $group =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
    for ((i = 0; i < BASH_REMATCH[2]; i++)); do counts+=("${BASH_REMATCH[1]}"); done
  else
    counts+=("$group")
  fi
done
# The allocation in DeepSpeed's hostfile format, kept with the run (and usable with `deepspeed --hostfile`).
for i in "${!hosts[@]}"; do
  echo "${hosts[i]} slots=${counts[i]:-1}"
done >"$run_dir/hostfile"

echo "job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}): ${#hosts[@]} node(s), ${SLURM_NTASKS:-?} rank(s)," \
  "rendezvous ${MASTER_ADDR}:${MASTER_PORT}, run ${run_dir}"

# srun passes signals it receives on to every task; `wait` returns early when a trapped one arrives.
stop_reason=""
srun_pid=""
# shellcheck disable=SC2329  # invoked by the traps below
forward() {
  stop_reason=$1
  [[ -n $srun_pid ]] && kill -s "$1" "$srun_pid" 2>/dev/null
  return 0
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# single quotes on purpose: each task expands SLURM_PROCID etc. in its own environment
# shellcheck disable=SC2016
srun --kill-on-bad-exit=1 bash -c '
  export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS
  exec coat-pipe train "$@" --resume
' coat-train "$@" &
srun_pid=$!

status=0
while true; do
  status=0
  wait "$srun_pid" || status=$?
  # a status above 128 with srun still alive means a trapped signal cut `wait` short
  if ((status > 128)) && kill -0 "$srun_pid" 2>/dev/null; then continue; fi
  break
done

if ((status == EXIT_INTERRUPTED)); then
  if [[ $stop_reason == USR1 ]]; then
    echo "time limit near: checkpoint saved, requeueing job ${SLURM_JOB_ID}"
    scontrol requeue "$SLURM_JOB_ID"
  else
    echo "SIG${stop_reason:-TERM} received, checkpoint saved: a preempted job is requeued by SLURM;" \
      "after scancel, submit the same command again to continue"
  fi
fi
exit "$status"
