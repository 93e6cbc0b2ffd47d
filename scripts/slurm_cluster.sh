#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this Debian machine, for the SLURM integration tests and for
# trying the SLURM launchers without a real cluster.
#
#   scripts/slurm_cluster.sh start    install slurm-wlm + munge if missing (root + apt-get), write a minimal
#                                     slurm.conf for this host, start munged, slurmctld and slurmd, and wait
#                                     until `sinfo` shows the node idle
#   scripts/slurm_cluster.sh stop     cancel every job, stop the daemons this script started
#   scripts/slurm_cluster.sh status   exit 0 when the cluster answers and the node is idle or busy
#
# Exit codes: 0 done; 1 a step failed (see the message and the daemons' logs); 2 usage; 3 this machine
# cannot host the cluster (not root, no apt-get, a slurm.conf not written by this script, ...).
#
# Never point it at a machine that is part of a real cluster: it writes /etc/slurm/slurm.conf (only when
# that file is absent or was written by this script), runs the daemons as root and clears saved job state.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # the daemons live in sbin, which a non-login shell may lack

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# written by simbench scripts/slurm_cluster.sh"
STATE_DIR=/run/simbench-slurm          # which daemons this script started (so stop ends only those)
LOG_DIR=/var/log/slurm
PARTITION=debug
WAIT_S=${SLURM_CLUSTER_WAIT_S:-60}

say() { echo "[slurm_cluster] $*" >&2; }
cannot() { say "cannot start: $*"; exit 3; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { [[ -s "$1" ]] && cat "$1" || true; }

munged_pid() { pid_of /run/munge/munged.pid; }
slurmctld_pid() { pid_of /run/slurmctld.pid; }
slurmd_pid() { pid_of /run/slurmd.pid; }

node_state() {
  # The node's state as sinfo reports it (idle, mix, alloc, down*, unk*, ...), empty if no answer.
  timeout 10 sinfo --noheader --partition="$PARTITION" --format=%t 2>/dev/null | head -n1 | tr -d ' ' || true
}

cluster_up() {
  case "$(node_state)" in
    idle|mix|alloc|comp) return 0 ;;
    *) return 1 ;;
  esac
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sinfo >/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || cannot "slurm-wlm/munge are not installed and there is no apt-get"
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq slurm-wlm munge; } >/tmp/simbench-slurm-apt.log 2>&1; then
    tail -n 20 /tmp/simbench-slurm-apt.log >&2
    cannot "apt-get install slurm-wlm munge failed (no package registry reachable?)"
  fi
}

write_conf() {
  if [[ -e "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
    cannot "$CONF exists and was not written by this script; refusing to touch a real SLURM setup"
  fi
  local host cpus mem
  host=$(hostname -s)
  # slurmd -C prints this node's real line: CPUs, sockets, cores and RealMemory (MB). Jobs asking for
  # --mem are refused when RealMemory is missing (the node then has 1 MB), so take it from there.
  local probe
  probe=$(slurmd -C 2>/dev/null | head -n1 || true)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$probe")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")
  cpus=${cpus:-$(nproc)}
  mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
  # Addresses are pinned to 127.0.0.1 so the cluster needs no name resolution of the host name.
  # proctrack/linuxproc + task/none need no cgroups (containers, CI sandboxes); cons_tres + CR_Core run
  # one array task per core; no accounting daemon (submitit's sacct polls fail harmlessly, see
  # docs/cluster.md); KillWait=5 makes cancel and requeue take seconds instead of the default 30.
  cat >"$CONF" <<EOF
$MARKER start; regenerated on every start
ClusterName=simbench
SlurmctldHost=$host(127.0.0.1)
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmUser=root
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobRequeue=1
KillWait=5
MinJobAge=600
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus${mem:+ RealMemory=$mem} State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if pid_alive "$(munged_pid)"; then
    return
  fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    command -v mungekey >/dev/null || cannot "no /etc/munge/munge.key and no mungekey to create one"
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  # munged refuses to run when its key, state or log files belong to someone else: fix the owner.
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0700 /etc/munge
  runuser -u munge -- /usr/sbin/munged
  echo munged >>"$STATE_DIR/started"
  local i
  for i in $(seq 1 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
      return
    fi
    sleep 0.2
  done
  say "munged does not answer (munge -n | unmunge fails); see /var/log/munge/munged.log"
  exit 1
}

start_slurm() {
  # Order matters: slurmd authenticates to slurmctld through munge.
  if ! pid_alive "$(slurmctld_pid)"; then
    /usr/sbin/slurmctld -c   # -c: start without the saved jobs of an earlier run
    echo slurmctld >>"$STATE_DIR/started"
  fi
  if ! pid_alive "$(slurmd_pid)"; then
    /usr/sbin/slurmd
    echo slurmd >>"$STATE_DIR/started"
  fi
  local deadline=$((SECONDS + WAIT_S)) state=""
  while ((SECONDS < deadline)); do
    state=$(node_state)
    case "$state" in
      idle) say "cluster up: partition $PARTITION, node $(hostname -s) idle"; return ;;
      down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  say "node not idle after ${WAIT_S}s (state '${state:-no answer}'); last log lines:"
  tail -n 15 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 2>/dev/null || true
  exit 1
}

stop_pid() {
  local name=$1 pid=$2 i
  pid_alive "$pid" || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    pid_alive "$pid" || { say "stopped $name (pid $pid)"; return 0; }
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
  say "killed $name (pid $pid)"
}

cmd_start() {
  [[ $(id -u) -eq 0 ]] || cannot "needs root (it installs packages, writes $CONF and runs the daemons)"
  [[ "$(uname -s)" == Linux ]] || cannot "needs Linux"
  if [[ -e "$CONF" ]] && grep -qF "$MARKER" "$CONF" && cluster_up; then
    say "already running"
    return
  fi
  install_packages
  write_conf
  mkdir -p "$STATE_DIR"
  start_munge
  start_slurm
}

cmd_stop() {
  if [[ -e "$CONF" ]] && grep -qF "$MARKER" "$CONF" && pid_alive "$(slurmctld_pid)"; then
    # Our own throw-away cluster: no job may outlive it.
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    local i
    for i in $(seq 1 30); do
      [[ -z "$(squeue --noheader 2>/dev/null)" ]] && break
      sleep 0.5
    done
  fi
  local started=""
  [[ -s "$STATE_DIR/started" ]] && started=$(cat "$STATE_DIR/started")
  grep -qx slurmd <<<"$started" && stop_pid slurmd "$(slurmd_pid)"
  grep -qx slurmctld <<<"$started" && stop_pid slurmctld "$(slurmctld_pid)"
  grep -qx munged <<<"$started" && stop_pid munged "$(munged_pid)"
  rm -f "$STATE_DIR/started"
  return 0
}

cmd_status() {
  local state
  state=$(node_state)
  if cluster_up; then
    echo "up: partition $PARTITION, node $(hostname -s) $state"
    return 0
  fi
  echo "down${state:+ (node state $state)}"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
