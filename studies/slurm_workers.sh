#!/usr/bin/env bash
# Workers of one phaser-opt study as a Slurm array job: each array task is one worker on one GPU,
# all sharing the study through one PostgreSQL database. Start the study once first (it creates the
# study and its dataset; `--n-trials 0` runs no trial), then submit:
#
#   phaser-opt studies/srtio3_multislice.yaml --storage "$PHASER_OPT_STORAGE" --n-trials 0
#   PHASER_OPT_STORAGE=postgresql+psycopg://user@dbhost/phaser sbatch --array=0-7 studies/slurm_workers.sh studies/srtio3_multislice.yaml
#
# A preempted or killed task leaves its trial to the heartbeat: another worker marks it failed and
# runs it again with the same parameters. Resubmitting the array continues the study.
#SBATCH --job-name=phaser-opt
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --output=phaser-opt-%A_%a.log
set -euo pipefail

study=${1:?usage: sbatch --array=0-N slurm_workers.sh STUDY.yaml}
: "${PHASER_OPT_STORAGE:?set PHASER_OPT_STORAGE to the database URL of the study}"
index=${SLURM_ARRAY_TASK_ID:-0}

# Slurm sets CUDA_VISIBLE_DEVICES to the task's GPU; the CPU share is the task's own cores.
export PHASER_CPU_DEVICES=${SLURM_CPUS_PER_TASK:-1}
# compiled programs are shared by the tasks of a node through the persistent cache
export PHASER_JAX_CACHE=${PHASER_JAX_CACHE:-${TMPDIR:-/tmp}/phaser-jax-cache}

exec phaser-opt worker "$study" --storage "$PHASER_OPT_STORAGE" --worker-index "$index"
