# Source me: install Slurm and munge (Debian packages) if missing, start a single-node Slurm
# without cgroups or systemd, wait until its node is idle, and export SLURM_CONF and
# WORKBENCH_TEST_SLURM=1. Idempotent: when it already runs, sourcing again only exports.
# `workbench_slurm_stop` (defined here) stops what this started. Needs root (SlurmUser=root).
# Settings that work on machines without cgroups: ../shared/DESIGN.md, "A single-node Slurm".
WORKBENCH_SLURM_DIR=${WORKBENCH_SLURM_DIR:-/tmp/workbench-slurm}
export SLURM_CONF="$WORKBENCH_SLURM_DIR/slurm.conf"

workbench_slurm_stop() {
  # slurmd first (it ends the job steps), then the controller, then munged; each by its pid file.
  local daemon pid
  for daemon in slurmd slurmctld munged; do
    pid=$(cat "$WORKBENCH_SLURM_DIR/$daemon.pid" 2>/dev/null) || continue
    if kill -TERM "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$WORKBENCH_SLURM_DIR/$daemon.pid"
  done
  unset WORKBENCH_TEST_SLURM
}

_workbench_slurm_running() {  # DAEMON: slurmctld or slurmd
  [ -s "$WORKBENCH_SLURM_DIR/$1.pid" ] && kill -0 "$(cat "$WORKBENCH_SLURM_DIR/$1.pid")" 2>/dev/null
}

_workbench_slurm_conf() {
  # The node as slurmd sees it (a node declared bigger than it is gets drained); no cgroups, no accounting.
  local node
  node=$(slurmd -C | head -1)
  cat >"$SLURM_CONF" <<EOF
ClusterName=workbench
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it starts again (default 120): the requeue test waits less
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$WORKBENCH_SLURM_DIR/state
SlurmdSpoolDir=$WORKBENCH_SLURM_DIR/spool
SlurmctldLogFile=$WORKBENCH_SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$WORKBENCH_SLURM_DIR/log/slurmd.log
SlurmctldPidFile=$WORKBENCH_SLURM_DIR/slurmctld.pid
SlurmdPidFile=$WORKBENCH_SLURM_DIR/slurmd.pid
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

_workbench_slurm_start() {
  if [ "$(id -u)" != 0 ]; then
    echo ".ci/slurm.sh: needs root (slurmd runs jobs as their users); Slurm not started" >&2
    return 1
  fi
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmd slurmctld slurm-client munge >/dev/null
  fi
  mkdir -p "$WORKBENCH_SLURM_DIR"/{state,spool,log} /run/munge
  chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then  # a munged already running is used, and left alone
    runuser -u munge -- munged && cp /run/munge/munged.pid "$WORKBENCH_SLURM_DIR/munged.pid"
  fi
  _workbench_slurm_conf
  # -c: a fresh controller, no jobs left from an earlier run
  _workbench_slurm_running slurmctld || slurmctld -c -f "$SLURM_CONF"
  _workbench_slurm_running slurmd || slurmd -f "$SLURM_CONF"
  for _ in $(seq 60); do
    [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && return 0
    sleep 0.5
  done
  echo ".ci/slurm.sh: the Slurm node is not idle after 30 s: see $WORKBENCH_SLURM_DIR/log/" >&2
  sinfo -N >&2
  return 1
}

if { _workbench_slurm_running slurmctld && _workbench_slurm_running slurmd; } || _workbench_slurm_start; then
  export WORKBENCH_TEST_SLURM=1
fi
