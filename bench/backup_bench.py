"""Backups side by side in one lab run -> bench/results/backup.md.

pgbench data at --scale (70 is about 1 GB), then: a pgBackRest full backup (repository on lb1,
lz4, process-max 2, over the TLS servers) against a plain pg_basebackup of the same data (in
the primary's namespace, to a local folder); a differential backup after 10% of
pgbench_accounts was updated; `lab restore --latest` of the whole cluster; the WAL archive lag
(now - pg_stat_archiver.last_archived_time, sampled each second) under a pgbench writer;
full backups again with other process-max and compress-type settings (what makes pgBackRest
slower or faster than pg_basebackup here); then the total-loss drill twice (every db node lost
under a writer, SIGKILL and a clean shutdown, reinstalled, restore --latest): acknowledged rows
lost against the rows of the last archive_timeout.

Usage (root): python3 bench/backup_bench.py [--scale N] [--writer-seconds S] [--no-variants]
              [--no-site-loss]
Uses cluster bakb, 10.82.2.0/24, host ports 32021-32023.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import labclusters
from labkit import backupdrill

from builder.lab import backup, restore
from builder.lab import lab as labmod
from builder.lab.readiness import leader

BIN = "/usr/lib/postgresql/15/bin"
DATA = labclusters.cluster_data("bakb", "10.82.2", (32021, 32022, 32023))
DATA["nodes"][3]["roles"] = ["haproxy", "backup"]


def pg_env(lab: labmod.Lab) -> dict[str, str]:
    su = lab.secrets().superuser
    return {**os.environ, "PGPASSWORD": su.password, "PGSSLMODE": "verify-full",
            "PGSSLROOTCERT": str(lab.ctx.out.pki / "ca.crt"), "PGHOST": lab.cluster.service_names()[0],
            "PGHOSTADDR": "127.0.0.1", "PGPORT": str(lab.ports()["rw"]), "PGUSER": su.username,
            "PGDATABASE": "postgres"}


def timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def basebackup(lab: labmod.Lab) -> float:
    primary = leader(lab) or "db1"
    rep = lab.secrets().replication
    dest = Path(tempfile.mkdtemp(prefix="bakb-basebackup-", dir="/var/tmp"))
    try:
        argv = ["ip", "netns", "exec", lab.net.node(primary).netns, f"{BIN}/pg_basebackup",
                "-d", f"host=127.0.0.1 port=5432 user={rep.username} password={rep.password}",
                "-D", str(dest / "data"), "-X", "stream", "-c", "fast"]
        t, _ = timed(lambda: subprocess.run(argv, check=True, capture_output=True))
        return t
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def archive_lag(lab: labmod.Lab, env: dict[str, str], seconds: int) -> list[float]:
    writer = subprocess.Popen([f"{BIN}/pgbench", "-n", "-c", "2", "-T", str(seconds)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lags: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                age = backup.archiver(lab)["age_s"]
                if age is not None:
                    lags.append(float(age))
            except Exception as exc:  # noqa: BLE001  (a sample lost is a sample lost)
                print(f"archive lag sample lost: {exc}", file=sys.stderr)
            stop.wait(1)

    t = threading.Thread(target=sample)
    t.start()
    writer.wait()
    stop.set()
    t.join()
    return lags


VARIANTS = [("process-max 1, lz4", ["--process-max=1"]),
            ("process-max 4, lz4", ["--process-max=4"]),
            ("process-max 2, compress none", ["--compress-type=none"]),
            ("process-max 4, compress none", ["--process-max=4", "--compress-type=none"])]


def variants(lab: labmod.Lab) -> list[tuple[str, str, str]]:
    rows = []
    for name, options in VARIANTS:
        t, b = timed(lambda o=options: backup.run_backup(lab, "full", *o))
        rows.append((f"pgBackRest full backup, {name}",
                     f"{b['size'] / 1e6:.0f} MB -> {b['repo_size'] / 1e6:.0f} MB",  # type: ignore[index]
                     f"{t:.1f} s"))
    return rows


def site_loss(lab: labmod.Lab, clean: bool, write_s: float) -> tuple[str, str, str]:
    out = backupdrill.site_loss(lab, clean, write_s, timeout=900)
    how = "clean shutdown" if clean else "SIGKILL"
    return (f"total loss ({how}) under a writer, restore --latest onto reinstalled nodes",
            (f"{out['acked']} rows acknowledged ({out['rate']}/s), {out['lost']} lost "
             f"({out['lost_span_s']} s of writes); last archive_timeout ({out['window_s']} s) "
             f"held {out['window_rows']}"),
            f"reinstalled {out['reimage_s']} s, every node streaming {out['recovered_s']} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--writer-seconds", type=int, default=60)
    ap.add_argument("--no-variants", action="store_true")
    ap.add_argument("--no-site-loss", action="store_true")
    opts = ap.parse_args()
    extra: list[tuple[str, str, str]] = []
    with labclusters.booted(DATA, timeout=240) as lab:
        env = pg_env(lab)
        t_init, _ = timed(lambda: subprocess.run([f"{BIN}/pgbench", "-i", "-q", "-s",
                                                  str(opts.scale)], env=env, check=True,
                                                 capture_output=True))
        backup.pgbackrest(lab, "check")
        t_full, full = timed(lambda: backup.run_backup(lab, "full"))
        t_base = basebackup(lab)
        churn = "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 10 = 0"
        t_churn, _ = timed(lambda: subprocess.run(
            [f"{BIN}/psql", "-Xqc", churn], env=env, check=True, capture_output=True))
        t_diff, diff = timed(lambda: backup.run_backup(lab, "diff"))
        lags = archive_lag(lab, env, opts.writer_seconds)
        if not opts.no_variants:
            extra += variants(lab)
        t_restore, done = timed(lambda: restore.restore(lab, None, timeout=900))
        if not opts.no_site_loss:
            window = lab.cluster.backup.archive_timeout
            extra.append(site_loss(lab, False, window + 10))
            extra.append(site_loss(lab, True, 20))
    rows = [
        ("pgbench -i", f"scale {opts.scale}", f"{t_init:.1f} s"),
        ("pgBackRest full backup", f"{full['size'] / 1e6:.0f} MB -> {full['repo_size'] / 1e6:.0f} MB in the repository (lz4, encrypted)", f"{t_full:.1f} s"),  # type: ignore[index]
        ("pg_basebackup (plain, -X stream, local)", "same data", f"{t_base:.1f} s"),
        ("10% churn (UPDATE every 10th account)", "", f"{t_churn:.1f} s"),
        ("pgBackRest diff backup", f"{diff['repo_size'] / 1e6:.1f} MB stored", f"{t_diff:.1f} s"),  # type: ignore[index]
        ("lab restore --latest (whole cluster)", f"data back {done['restore_s']} s, leading {done['leader_s']} s", f"{t_restore:.1f} s"),  # type: ignore[index]
        ("WAL archive lag under pgbench -c 2", f"{len(lags)} samples", f"median {sorted(lags)[len(lags) // 2]:.1f} s, max {max(lags):.1f} s" if lags else "no samples"),
        *extra,
    ]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    intro = (f"One run, {when}, on the shared 2-core machine (other engineers' labs and tests "
             "running: figures are upper bounds). Lab cluster bakb, fast profile, repository "
             "on lb1.")
    text = ["# Backups (bench/backup_bench.py)", "", intro, "",
            "| step | size | time |", "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows), ""]
    out = Path(__file__).resolve().parent / "results" / "backup.md"
    out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
