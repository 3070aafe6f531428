"""A throwaway one-node SLURM cluster on this machine, for testing the SLURM profile.

Use it as the session-scoped pytest fixture ``slurm_cluster`` (import
``slurm_cluster_fixture`` into the test module), as a context manager
(``with SlurmCluster() as cluster: ...``) or by hand: ``python tests/slurm_cluster.py``
starts a cluster and prints the ``SLURM_CONF`` to export; Ctrl-C stops it.

What it does, on Debian/Ubuntu as root (no systemd and no cgroups needed):

- installs ``slurmctld slurmd slurm-client munge`` (plus ``slurmdbd mariadb-server`` with
  ``accounting=True``) with apt-get when missing, without letting the packages start system
  daemons;
- writes every config, key, state and log file into a fresh temporary directory, with free
  TCP ports, a private munge key and socket, so nothing is shared with a real cluster;
- declares one node (this host; CPUs, memory and GPUs are *declared*, see
  ``SlurmdParameters=config_overrides``) with fake GPUs ``/dev/fakegpuN`` (distinct character
  devices, created when missing), and two partitions: ``gpu`` (default) and ``cpu``;
- starts munged (as user munge), optionally mariadbd + slurmdbd, then slurmctld and slurmd in
  the foreground as its own child processes, and waits until ``sinfo`` shows the node idle;
- on exit -- also after an error -- cancels leftover jobs and stops exactly the processes it
  started, by PID, then puts back what it changed outside its directory.

``SLURM_CONF``: the daemons get ``-f <dir>/slurm.conf`` and client commands (sbatch, squeue,
sacct, scontrol, sinfo) honour ``SLURM_CONF``, which ``SlurmCluster.env()`` sets. That is not
enough for Snakemake: snakemake-executor-plugin-slurm-jobstep runs each rule through ``srun``
*inside* the job with every ``SLURM_*`` variable except a few job ids removed, ``SLURM_CONF``
included, so that ``srun`` reads ``/etc/slurm/slurm.conf``. The harness therefore also writes
the same config there for its lifetime and restores whatever was there before (a copy of an
original survives a crash as ``slurm.conf.tavaal-orig``). A host-wide lock file keeps two
clusters (e.g. pytest-xdist workers) from running at once.

Environment: ``TAVAAL_REQUIRE_SLURM=1`` turns "cannot run a cluster here" (not root, no apt,
install failed) from a skip into a failure (set in CI); ``TAVAAL_SLURM_ACCOUNTING=1`` makes the
fixture start slurmdbd + MariaDB; ``TAVAAL_SLURM_KEEP=1`` keeps the temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

REQUIRE_ENV = "TAVAAL_REQUIRE_SLURM"
ACCOUNTING_ENV = "TAVAAL_SLURM_ACCOUNTING"
KEEP_ENV = "TAVAAL_SLURM_KEEP"

CORE_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
SYSTEM_CONF_BACKUP = SYSTEM_CONF.with_name("slurm.conf.tavaal-orig")
CONF_MARKER = "# Written by tavaal tests/slurm_cluster.py"
LOCK_PATH = Path(tempfile.gettempdir()) / "tavaal-slurm-cluster.lock"
CLUSTER_NAME = "tavaaltest"
PARTITIONS = ("gpu", "cpu")  # the first one is the default partition
# Daemons live in sbin, which a non-login root shell may not have on PATH.
_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_apt_updated = False  # `apt-get update` at most once per process
_active: SlurmCluster | None = None  # the cluster this process runs, if any


class SlurmUnavailable(RuntimeError):
    """This machine cannot host the test cluster (not root, no apt, packages not installable)."""


class SlurmError(RuntimeError):
    """The test cluster was possible here but did not start or stop cleanly."""


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def pid_alive(pid: int) -> bool:
    """True while `pid` is a live (non-zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + _SEARCH_PATH)


def _need(*names: str) -> str:
    for name in names:
        found = _which(name)
        if found:
            return found
    raise SlurmUnavailable(f"{' or '.join(names)} not found after installing the packages")


def missing_packages(packages: Sequence[str]) -> list[str]:
    if _which("dpkg-query") is None:
        raise SlurmUnavailable("dpkg-query not found: the harness needs Debian or Ubuntu")
    missing = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        )
        if result.returncode != 0 or not result.stdout.endswith("install ok installed"):
            missing.append(package)
    return missing


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """Stop package scripts from starting system munged/mariadb we would not own."""
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text("#!/bin/sh\n# temporary, from tavaal tests/slurm_cluster.py\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def ensure_packages(packages: Sequence[str], timeout: float = 900.0) -> list[str]:
    """Install the missing Debian packages; return the ones installed now."""
    global _apt_updated
    missing = missing_packages(packages)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"packages {missing} are missing and installing them needs root")
    if _which("apt-get") is None:
        raise SlurmUnavailable(f"packages {missing} are missing and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": _SEARCH_PATH}
    commands = [] if _apt_updated else [["apt-get", "update", "-qq"]]
    commands.append(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing])
    with _no_service_starts():
        for command in commands:
            try:
                result = subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=timeout
                )
            except subprocess.TimeoutExpired as exc:
                raise SlurmUnavailable(f"`{' '.join(command)}` timed out after {timeout}s") from exc
            if result.returncode != 0:
                raise SlurmUnavailable(
                    f"`{' '.join(command)}` failed ({result.returncode}):\n"
                    + (result.stdout + result.stderr)[-2000:]
                )
            if command[1] == "update":
                _apt_updated = True
    still = missing_packages(missing)
    if still:
        raise SlurmUnavailable(f"apt-get reported success but {still} are not installed")
    return missing


def _free_ports(count: int) -> list[int]:
    """Ports free right now; held together so that they differ from each other."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _child_setup() -> None:
    """Child side of Popen: no blocked signals, and SIGTERM if our process dies without
    running its finalizers (killed by a CI timeout)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class SlurmCluster:
    """One-node SLURM cluster owned by this process; see the module docstring."""

    def __init__(
        self,
        *,
        accounting: bool = False,
        gpus: int = 2,
        cpus: int = 8,
        real_memory_mb: int = 65536,
        start_timeout: float = 60.0,
        lock_timeout: float = 900.0,
        keep_dir: bool | None = None,
    ) -> None:
        if gpus < 1 or cpus < 1:
            raise ValueError("gpus and cpus must be >= 1")
        self.accounting = accounting
        self.gpus = gpus
        self.cpus = cpus
        self.real_memory_mb = real_memory_mb
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.keep_dir = env_flag(KEEP_ENV) if keep_dir is None else keep_dir
        # slurmd names itself after the short host name.
        self.node_name = socket.gethostname().split(".")[0]
        self.base_dir: Path | None = None
        self.ports: dict[str, int] = {}
        self.installed_packages: list[str] = []
        self.timings: dict[str, float] = {}
        self.last_pids: dict[str, int] = {}  # daemons of the latest start, kept after stop()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._created_devices: list[Path] = []
        self._system_conf_written = False
        self._lock_fd: int | None = None

    # ----------------------------------------------------------------------------- paths
    def _dir(self) -> Path:
        if self.base_dir is None:
            raise SlurmError("the cluster is not started")
        return self.base_dir

    @property
    def slurm_conf(self) -> Path:
        return self._dir() / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self._dir() / "munge" / "munge.socket"

    @property
    def log_dir(self) -> Path:
        return self._dir() / "log"

    def log_file(self, daemon: str) -> Path:
        """The daemon's own log file (slurmctld, slurmd, slurmdbd, munged, mariadbd)."""
        return self.log_dir / f"{daemon}.log"

    # ----------------------------------------------------------------------------- state
    @property
    def running(self) -> bool:
        return bool(self._procs)

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the daemons this cluster started and has not stopped yet."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for client commands and Snakemake: SLURM_CONF set, no inherited job
        or GPU variables (sbatch --export=ALL would pass them into every job)."""
        env = dict(os.environ if base is None else base)
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_")) or key == "CUDA_VISIBLE_DEVICES":
                del env[key]
        env["SLURM_CONF"] = str(self.slurm_conf)
        env["PATH"] = env.get("PATH", "") + os.pathsep + _SEARCH_PATH
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 60.0):
        """Run a client command (sbatch, squeue, scontrol, sacct...) against this cluster."""
        result = subprocess.run(
            list(args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise SlurmError(
                f"`{' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def logs(self, lines: int = 30) -> str:
        """Last lines of every daemon log, for error messages."""
        if self.base_dir is None or not self.log_dir.is_dir():
            return "(no logs)"
        parts = []
        for path in sorted(self.log_dir.iterdir()):
            text = _tail(path, lines)
            if text:
                parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts) or "(logs are empty)"

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> SlurmCluster:
        """Install what is missing and start the daemons; on any failure undo everything."""
        global _active
        if self.running:
            return self
        if _active is not None and _active is not self:
            raise SlurmError("another SlurmCluster is already running in this process")
        started = time.monotonic()
        try:
            if not sys.platform.startswith("linux"):
                raise SlurmUnavailable("the SLURM test cluster needs Linux")
            if os.geteuid() != 0:
                raise SlurmUnavailable("the SLURM test cluster needs root (daemons, /etc/slurm)")
            # Lock first: two pytest-xdist workers must not run apt-get at the same time either.
            self._acquire_host_lock()
            _active = self
            packages = CORE_PACKAGES + (ACCOUNTING_PACKAGES if self.accounting else ())
            self.installed_packages = ensure_packages(packages)
            self.timings["install_s"] = time.monotonic() - started
            self._prepare_dir()
            self._create_fake_gpus()
            self._write_configs()
            self._install_system_conf()
            daemons_started = time.monotonic()
            self._start_munged()
            if self.accounting:
                self._start_mariadb()
                self._start_slurmdbd()
            self._start_slurmctld()
            self._start_slurmd()
            self._wait_node_idle()
            self.timings["daemons_s"] = time.monotonic() - daemons_started
        except BaseException:
            with contextlib.suppress(SlurmError):
                self.stop()
            raise
        self.timings["start_s"] = time.monotonic() - started
        self.last_pids = self.pids
        return self

    def stop(self) -> None:
        """Cancel leftover jobs, stop our daemons by PID, restore system files. Idempotent.

        Raises SlurmError when a daemon it started is still alive afterwards."""
        global _active
        stopped: dict[str, int] = {}
        try:
            ctld = self._procs.get("slurmctld")
            if ctld is not None and ctld.poll() is None:
                with contextlib.suppress(Exception):  # stopping the daemons matters more
                    self._cancel_jobs()
            # Reverse start order: slurmd before slurmctld before slurmdbd/munged.
            for name in reversed(list(self._procs)):
                proc = self._procs.pop(name)
                stopped[name] = proc.pid
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=10)
        finally:
            self._restore_system_conf()
            for device in self._created_devices:
                device.unlink(missing_ok=True)
            self._created_devices = []
            if self.base_dir is not None and not self.keep_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing releases the flock
                self._lock_fd = None
            if _active is self:
                _active = None
        if stopped:
            self.last_pids = stopped
        survivors = {name: pid for name, pid in stopped.items() if pid_alive(pid)}
        if survivors:
            raise SlurmError(f"daemons still alive after stop: {survivors}")

    # ----------------------------------------------------------------------------- setup steps
    def _acquire_host_lock(self) -> None:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SlurmError(
                        f"another test cluster held {LOCK_PATH} for {self.lock_timeout}s"
                    ) from None
                time.sleep(1.0)
        self._lock_fd = fd

    def _prepare_dir(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="tavaal-slurm-"))
        # munged and mariadbd run as their own users and must traverse the directory.
        self.base_dir.chmod(0o755)
        for sub in ("etc", "state", "spool", "log"):
            (self.base_dir / sub).mkdir()
        names = ["slurmctld", "slurmd"] + (["slurmdbd", "mariadb"] if self.accounting else [])
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))

    def _create_fake_gpus(self) -> None:
        for index in range(self.gpus):
            device = Path(f"/dev/fakegpu{index}")
            if device.exists():
                if not stat.S_ISCHR(device.stat().st_mode):
                    raise SlurmError(f"{device} exists but is not a character device")
                continue
            try:
                # Same numbers as /dev/null: slurmd only needs distinct device files.
                os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            except PermissionError as exc:
                raise SlurmUnavailable(f"cannot create fake GPU {device}: {exc}") from exc
            self._created_devices.append(device)

    def _slurm_conf_text(self) -> str:
        base = self._dir()
        node = self.node_name
        lines = [
            f"{CONF_MARKER} for the test cluster in {base};",
            "# the previous file is put back when that cluster stops.",
            f"ClusterName={CLUSTER_NAME}",
            f"SlurmctldHost={node}(127.0.0.1)",
            f"SlurmctldPort={self.ports['slurmctld']}",
            f"SlurmdPort={self.ports['slurmd']}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={base / 'state'}",
            f"SlurmdSpoolDir={base / 'spool'}",
            f"SlurmctldPidFile={base / 'slurmctld.pid'}",
            f"SlurmdPidFile={base / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_file('slurmctld')}",
            f"SlurmdLogFile={self.log_file('slurmd')}",
            "MailProg=/bin/true",
            "MpiDefault=none",
            # No cgroups in containers: track processes by /proc, bind nothing.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # Without a default, a job with no --mem takes the whole node.
            "DefMemPerCPU=1000",
            # Frequent backfill, so a waiting GPU job does not hold CPU jobs behind it.
            "SchedulerParameters=bf_interval=2",
            # Finished jobs stay visible to squeue/scontrol for 5 min: squeue status checks.
            "MinJobAge=300",
            "ReturnToService=2",
            # The node is declared, not measured: a small GPU node on any CI runner.
            "SlurmdParameters=config_overrides",
            "GresTypes=gpu",
            "JobAcctGatherType=jobacct_gather/none",
        ]
        if self.accounting:
            lines += [
                # Record GPUs in a job's TRES (sacct AllocTRES); slurmctld refuses this
                # setting without slurmdbd.
                "AccountingStorageTRES=gres/gpu",
                "AccountingStorageType=accounting_storage/slurmdbd",
                "AccountingStorageHost=localhost",
                f"AccountingStoragePort={self.ports['slurmdbd']}",
                # For slurmdbd, AuthInfo is not used: this names the munge socket.
                f"AccountingStoragePass={self.munge_socket}",
            ]
        else:
            lines.append("AccountingStorageType=accounting_storage/none")
        lines.append(
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={self.cpus} Boards=1 SocketsPerBoard=1 "
            f"CoresPerSocket={self.cpus} ThreadsPerCore=1 RealMemory={self.real_memory_mb} "
            f"Gres=gpu:{self.gpus} State=UNKNOWN"
        )
        for index, partition in enumerate(PARTITIONS):
            default = "YES" if index == 0 else "NO"
            lines.append(
                f"PartitionName={partition} Nodes={node} Default={default} "
                "MaxTime=INFINITE State=UP"
            )
        return "\n".join(lines) + "\n"

    def _write_configs(self) -> None:
        etc = self._dir() / "etc"
        self.slurm_conf.write_text(self._slurm_conf_text())
        # One line per device: a repeated File= kills slurmd, Count= alone drains the node.
        gres = ["AutoDetect=off"] + [
            f"NodeName={self.node_name} Name=gpu File=/dev/fakegpu{index}"
            for index in range(self.gpus)
        ]
        (etc / "gres.conf").write_text("\n".join(gres) + "\n")
        if self.accounting:
            dbd = etc / "slurmdbd.conf"
            dbd.write_text(
                "\n".join(
                    [
                        "AuthType=auth/munge",
                        f"AuthInfo=socket={self.munge_socket}",
                        "DbdHost=localhost",
                        f"DbdPort={self.ports['slurmdbd']}",
                        "SlurmUser=root",
                        "StorageType=accounting_storage/mysql",
                        "StorageHost=127.0.0.1",
                        f"StoragePort={self.ports['mariadb']}",
                        # mariadbd runs with --skip-grant-tables: any user/password works.
                        "StorageUser=slurm",
                        "StoragePass=unused",
                        "StorageLoc=slurm_acct_db",
                        f"PidFile={self._dir() / 'slurmdbd.pid'}",
                        f"LogFile={self.log_file('slurmdbd')}",
                    ]
                )
                + "\n"
            )
            dbd.chmod(0o600)  # slurmdbd refuses a readable config (it holds a password)

    def _install_system_conf(self) -> None:
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            ours = CONF_MARKER in SYSTEM_CONF.read_text(errors="replace")
            if not ours:
                if SYSTEM_CONF_BACKUP.exists():
                    raise SlurmError(
                        f"both {SYSTEM_CONF} and {SYSTEM_CONF_BACKUP} exist; "
                        "put the right one back by hand"
                    )
                os.replace(SYSTEM_CONF, SYSTEM_CONF_BACKUP)
            # else: left over from a crashed run; the original (if any) is already backed up
        self._system_conf_written = True
        SYSTEM_CONF.write_text(self._slurm_conf_text())

    def _restore_system_conf(self) -> None:
        if not self._system_conf_written:
            return
        self._system_conf_written = False
        with contextlib.suppress(OSError):
            if CONF_MARKER in SYSTEM_CONF.read_text(errors="replace"):
                SYSTEM_CONF.unlink()
        if SYSTEM_CONF_BACKUP.exists() and not SYSTEM_CONF.exists():
            os.replace(SYSTEM_CONF_BACKUP, SYSTEM_CONF)

    # ----------------------------------------------------------------------------- daemons
    def _spawn(self, name: str, argv: list[str], user: str | None = None) -> None:
        env = {"PATH": _SEARCH_PATH, "SLURM_CONF": str(self.slurm_conf), "LANG": "C.UTF-8"}
        with open(self.log_dir / f"{name}.stdout", "ab") as out:  # Popen keeps its own copy
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._dir(),
                user=user,
                group=user,
                extra_groups=[] if user else None,
                # Own session: a Ctrl-C to pytest reaches our finalizer, not the daemons.
                start_new_session=True,
                preexec_fn=_child_setup,
            )
        self._procs[name] = proc

    def _wait_for(self, name: str, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        proc = self._procs[name]
        while True:
            code = proc.poll()
            if code is not None:
                raise SlurmError(f"{name} exited with code {code} during start\n{self.logs()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise SlurmError(
                    f"{name}: {what} not reached within {self.start_timeout}s\n{self.logs()}"
                )
            time.sleep(0.2)

    def _start_munged(self) -> None:
        munge_dir = self.munge_socket.parent
        munge_dir.mkdir()
        shutil.chown(munge_dir, "munge", "munge")
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))  # a private key: any 32+ random bytes will do
        key.chmod(0o400)
        shutil.chown(key, "munge", "munge")
        log = self.log_file("munged")
        log.touch()
        shutil.chown(log, "munge", "munge")
        argv = [
            _need("munged"),
            "--foreground",
            f"--socket={self.munge_socket}",
            f"--key-file={key}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
            f"--log-file={log}",
        ]
        self._spawn("munged", argv, user="munge")
        munge = _need("munge")

        def encodes() -> bool:
            command = [munge, "-n", "-S", str(self.munge_socket)]
            return subprocess.run(command, capture_output=True).returncode == 0

        self._wait_for("munged", encodes, "a working munge socket")

    def _start_mariadb(self) -> None:
        db_dir = self._dir() / "mysql"
        data = db_dir / "data"
        data.mkdir(parents=True)
        for path in (db_dir, data):
            shutil.chown(path, "mysql", "mysql")
        log = self.log_file("mariadbd")
        log.touch()
        shutil.chown(log, "mysql", "mysql")
        # An empty datadir with --skip-grant-tables starts in <1 s: no install-db, no users.
        argv = [
            _need("mariadbd", "mysqld"),
            "--no-defaults",
            "--user=mysql",
            f"--datadir={data}",
            f"--socket={db_dir / 'mysqld.sock'}",
            f"--pid-file={db_dir / 'mysqld.pid'}",
            f"--port={self.ports['mariadb']}",
            "--bind-address=127.0.0.1",
            "--skip-grant-tables",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=8M",
            "--innodb-lock-wait-timeout=900",
            f"--log-error={log}",
        ]
        self._spawn("mariadbd", argv)
        port = self.ports["mariadb"]
        self._wait_for("mariadbd", lambda: _port_open(port), f"listening on port {port}")

    def _start_slurmdbd(self) -> None:
        # slurmdbd reads slurmdbd.conf next to $SLURM_CONF.
        self._spawn("slurmdbd", [_need("slurmdbd"), "-D"])
        port = self.ports["slurmdbd"]
        self._wait_for("slurmdbd", lambda: _port_open(port), f"listening on port {port}")

    def _start_slurmctld(self) -> None:
        self._spawn("slurmctld", [_need("slurmctld"), "-D", "-f", str(self.slurm_conf)])
        scontrol = _need("scontrol")

        def up() -> bool:
            result = subprocess.run(
                [scontrol, "ping"], env=self.env(), capture_output=True, text=True
            )
            return result.returncode == 0 and "is UP" in result.stdout

        self._wait_for("slurmctld", up, "`scontrol ping` UP")

    def _start_slurmd(self) -> None:
        self._spawn("slurmd", [_need("slurmd"), "-D", "-f", str(self.slurm_conf)])

    def _wait_node_idle(self) -> None:
        sinfo = _need("sinfo")
        seen = ""

        def idle() -> bool:
            nonlocal seen
            result = subprocess.run(
                [sinfo, "-h", "-N", "-n", self.node_name, "-o", "%T|%E"],
                env=self.env(),
                capture_output=True,
                text=True,
            )
            seen = result.stdout.strip() or result.stderr.strip()
            states = {line.split("|")[0] for line in result.stdout.splitlines() if line}
            if any(state.startswith("drain") for state in states):
                raise SlurmError(f"node {self.node_name} drained: {seen}\n{self.logs()}")
            return states == {"idle"}

        try:
            self._wait_for("slurmd", idle, f"node {self.node_name} idle in sinfo")
        except SlurmError as exc:
            raise SlurmError(f"{exc}\nlast sinfo: {seen}") from None

    def _cancel_jobs(self) -> None:
        """scancel whatever is still queued or running, so no slurmstepd outlives us."""
        squeue = ["squeue", "-h", "-o", "%A"]
        jobs = self.run(*squeue, check=False).stdout.split()
        if not jobs:
            return
        self.run("scancel", *jobs, check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = self.run(*squeue, check=False)
            if result.returncode != 0 or not result.stdout.split():
                return
            time.sleep(0.5)


# --------------------------------------------------------------------------------- pytest
@pytest.fixture(scope="session", name="slurm_cluster")
def slurm_cluster_fixture(request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    """Session-wide test cluster. Skips where none can run, unless TAVAAL_REQUIRE_SLURM=1.

    Accounting comes from `request.param` (indirect parametrisation) or TAVAAL_SLURM_ACCOUNTING.
    Teardown fails the session if a daemon survives its stop."""
    accounting = getattr(request, "param", None)
    if accounting is None:
        accounting = env_flag(ACCOUNTING_ENV)
    cluster = SlurmCluster(accounting=bool(accounting))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        if env_flag(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but no SLURM test cluster: {exc}", pytrace=False)
        pytest.skip(f"no local SLURM test cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------------- by hand
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounting", action="store_true", help="also run slurmdbd + MariaDB")
    parser.add_argument("--gpus", type=int, default=2, help="fake GPUs on the node")
    parser.add_argument("--cpus", type=int, default=8, help="CPUs declared for the node")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the cluster like Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):
        with SlurmCluster(accounting=args.accounting, gpus=args.gpus, cpus=args.cpus) as cluster:
            print(f"SLURM test cluster up in {cluster.timings['start_s']:.1f}s: {cluster.pids}")
            print(f"export SLURM_CONF={cluster.slurm_conf}")
            print("Ctrl-C (or SIGTERM) stops it.", flush=True)
            while True:
                signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
