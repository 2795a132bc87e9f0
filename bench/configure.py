"""Configure benchmark: N Linux lab laptops configured through Masterline vs bare
``ansible-playbook`` with the same playbook, the same hosts and the same settings.

    python -m bench.configure [--laptops 5] [--rounds 3]

Each round, in a rotating order, runs on freshly reset laptops (every task has work to
do: hostname, WireGuard profile, app markers):

- **baseline**: ``ansible-playbook -i inventory.json -f N -e @secrets.json
  playbooks/linux/configure.yml`` with the environment Masterline gives it (pipelining,
  ControlPersist, pinned host keys), ControlPersist masters closed afterwards;
- **batched**: ``provisioning.configure.linux.configure_linux_batch``: one ansible-runner run
  for the N laptops, per-laptop results from the events (what a worker configuring a
  wave uses);
- **waves**: N threads each calling ``LinuxWaves.configure`` for one laptop, what the
  pipeline's configure step does when N Linux laptops of one worker reach it together:
  they join one wave and one ansible-runner run, each thread gets its own verdict;
- **per-laptop**: N threads each calling ``configure_os`` for one laptop (N
  ansible-runner runs in parallel, one per laptop: the pipeline with
  ``MASTERLINE_WORKER_CONFIGURE_WAVE_SECONDS=0``).

Printed per variant: median wall seconds, the median over rounds of its wall time divided
by the same round's baseline (target <= 1.1x), and the same for the controller's CPU
seconds (this process and its children), which a loaded machine disturbs less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.lab import Lab, LabLaptop, LaptopSpec
from provisioning.configure.ansible import default_forks, host_alias, inventory_host
from provisioning.configure.ansible_procs import envvars, stop_control_masters
from provisioning.configure.apply import configure_os
from provisioning.configure.linux import (
    CONFIGURE_PLAYBOOK,
    configure_linux_batch,
    linux_hostvars,
    linux_secrets,
    playbook_path,
)
from provisioning.configure.plan import ConfigPlan, OsTarget
from provisioning.pipeline.waves import LinuxWaves

TARGET_RATIO = 1.1


def plan_for(serial: str) -> ConfigPlan:
    return ConfigPlan.from_dict(
        {
            "hostname_pattern": "ACME-{serial}",
            "vpn": {
                "kind": "wireguard",
                "server": "vpn.acme.example",
                "settings": {"address": "10.8.0.2/32", "peer_public_key": "PEERpub="},
            },
            "apps": [
                {"name": "Microsoft Teams", "package": "teams-for-linux"},
                {"name": "Zoom", "package": "zoom"},
                {"name": "Slack", "package": "slack-desktop"},
            ],
        },
        os_family="linux",
        secrets={"private_key": f"bench-private-key-{serial}="},
        fields={"serial": serial},
    )


def target_of(lp: LabLaptop) -> OsTarget:
    return OsTarget.linux(
        host=lp.host,
        ssh_port=lp.ssh_port,
        user=lp.ssh_user,
        key_path=lp.client_key_path,
        known_hosts_path=lp.known_hosts_path,
        target_root=str(lp.os_root),
    )


def reset(laptops: list[LabLaptop]) -> None:
    """Back to the freshly imaged state: nothing configured."""
    for lp in laptops:
        shutil.rmtree(lp.os_root, ignore_errors=True)
        (lp.os_root / "etc").mkdir(parents=True)
        (lp.os_root / "etc/hostname").write_text("localhost\n")


def run_baseline(pairs: list[tuple[OsTarget, ConfigPlan]], work: Path) -> float:
    hosts = {host_alias(t): {**inventory_host(t), **linux_hostvars(t, p)} for t, p in pairs}
    inventory = work / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    secrets = work / "secrets.json"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"masterline_secrets": {host_alias(t): linux_secrets(p) for t, p in pairs}}, fh)
    cp_dir = Path(tempfile.mkdtemp(prefix="ml-cpb-"))
    (work / "ansible.cfg").touch()
    env = {**os.environ, **envvars(work, cp_dir)}
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inventory),
        "-f",
        str(forks_for(len(pairs))),
        "-e",
        f"@{secrets}",
        str(playbook_path(CONFIGURE_PLAYBOOK)),
    ]
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    finally:
        elapsed = time.perf_counter() - start
        stop_control_masters(cp_dir)
    if proc.returncode != 0:
        raise SystemExit(f"baseline ansible-playbook failed: {proc.stdout[-2000:]}")
    return elapsed


def forks_for(n: int) -> int:
    """What ``configure_linux_batch`` uses by default; both sides get the same."""
    return default_forks(n)


def run_batched(pairs: list[tuple[OsTarget, ConfigPlan]], work: Path) -> float:
    start = time.perf_counter()
    results = configure_linux_batch(
        pairs, on_event=lambda e: None, timeout=900, work_dir=work, forks=forks_for(len(pairs))
    )
    elapsed = time.perf_counter() - start
    failed = {k: str(v) for k, v in results.items() if v is not None}
    if failed:
        raise SystemExit(f"batched configure failed: {failed}")
    return elapsed


def run_waves(pairs: list[tuple[OsTarget, ConfigPlan]], work: Path) -> float:
    # As the engine's count would say: all N are in configure or on their way to it.
    waves = LinuxWaves(window=60, work_dir=work, pending=lambda: len(pairs))
    return _threads(
        pairs, lambda t, p: waves.configure(t, p, on_event=lambda e: None, timeout=900), "waves"
    )


def run_per_laptop(pairs: list[tuple[OsTarget, ConfigPlan]], work: Path) -> float:
    return _threads(
        pairs,
        lambda t, p: configure_os(t, p, on_event=lambda e: None, timeout=900, work_dir=work),
        "per-laptop",
    )


def _threads(
    pairs: list[tuple[OsTarget, ConfigPlan]],
    configure: Callable[[OsTarget, ConfigPlan], None],
    name: str,
) -> float:
    """One thread per laptop, as the engine runs each laptop's run in its own thread."""
    errors: list[str] = []

    def one(t: OsTarget, p: ConfigPlan) -> None:
        try:
            configure(t, p)
        except Exception as e:  # reported below
            errors.append(f"{t.label}: {e}")

    threads = [threading.Thread(target=one, args=pair) for pair in pairs]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{name} configure failed: {errors}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--laptops", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    # SIGTERM must still run the finally below: the lab's sshds are ours to stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="ml-bench-configure-"))
    lab = Lab(root / "lab", keep_running=True)
    try:
        specs = [
            LaptopSpec(serial=f"BENCH{i:04d}", disk_bytes=1 << 20) for i in range(args.laptops)
        ]
        laptops = [lab.reboot_into_os(lp.name) for lp in lab.up(specs)]
        pairs = [(target_of(lp), plan_for(lp.serial)) for lp in laptops]
        variants: dict[str, Callable[[list[tuple[OsTarget, ConfigPlan]], Path], float]] = {
            "baseline": run_baseline,
            "batched": run_batched,
            "waves": run_waves,
            "per-laptop": run_per_laptop,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        # Warm-up (page cache, Python bytecode), not counted.
        reset(laptops)
        run_baseline(pairs, _fresh(root / "warmup"))
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                reset(laptops)
                before = _cpu_seconds()
                elapsed = variants[name](pairs, _fresh(root / f"{name}-{r}"))
                used = _cpu_seconds() - before
                times[name].append(elapsed)
                cpu[name].append(used)
                print(f"round {r + 1} {name:<11} {elapsed:6.2f} s  {used:6.2f} CPU-s", flush=True)
        report(times, cpu, args.laptops)
    finally:
        lab.down()
        shutil.rmtree(root, ignore_errors=True)


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpu_seconds() -> float:
    """CPU of this process and of every finished child (ansible-playbook, its forks and
    ssh clients): what the controller spends, whatever else loads the machine."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def report(times: dict[str, list[float]], cpu: dict[str, list[float]], n: int) -> dict[str, Any]:
    """Wall ratio per round (each variant against the baseline of the same round, so a
    machine whose load drifts compares like with like), then the median over rounds."""
    rounds = len(times["baseline"])
    print(f"\nconfigure {n} Linux lab laptops, {rounds} rounds (median)")
    print(f"{'variant':<12}{'wall s':>8}{'wall ratio':>12}{'CPU-s':>8}{'CPU ratio':>11}")
    out: dict[str, Any] = {}
    for name in times:
        wall_ratio = statistics.median(
            t / b for t, b in zip(times[name], times["baseline"], strict=True)
        )
        cpu_ratio = statistics.median(
            c / b for c, b in zip(cpu[name], cpu["baseline"], strict=True)
        )
        flag = ""
        if name != "baseline":
            flag = "  ok" if wall_ratio <= TARGET_RATIO else "  over target"
        print(
            f"{name:<12}{statistics.median(times[name]):>8.2f}{wall_ratio:>11.2f}x"
            f"{statistics.median(cpu[name]):>8.2f}{cpu_ratio:>10.2f}x{flag}"
        )
        out[name] = {"wall_ratio": wall_ratio, "cpu_ratio": cpu_ratio}
    print(f"load average: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    return out


if __name__ == "__main__":
    main()
