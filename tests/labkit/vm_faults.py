"""Faults only a VM can take: watchdog fencing and a real reboot (the vm engine, builder.lab.vmboot).

- watchdog: Patroni on the primary is frozen (SIGSTOP inside the guest) while its PostgreSQL
  keeps running and accepting writes. Patroni no longer feeds /dev/watchdog (softdog, armed by
  Patroni with `watchdog: required` at ttl - safety_margin), so the guest kernel resets the VM
  before the leader key expires; a replica is then promoted. Measured: SIGSTOP to the reset
  (the console's "softdog: Initiating system reboot" and the next kernel boot), RTO through
  :5000, acknowledged rows lost, and acknowledged rows of the old primary after the new one
  had acknowledged one (two primaries acknowledging: must be 0).
"""

from __future__ import annotations

import threading
import time

from builder.lab import qemu, vmboot
from builder.lab.lab import Lab
from labkit import scenarios

SOFTDOG = "softdog: Initiating system reboot"


class ResetWatch:
    """Polls the VM's console from the host: when its next kernel boot starts."""

    def __init__(self, vm: qemu.Vm) -> None:
        self.vm = vm
        self.boots = qemu.boots(vm)
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ResetWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if qemu.boots(self.vm) > self.boots:
                self.at = time.monotonic()
                return
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def watchdog_fence(lab: Lab) -> scenarios.Outcome:
    watch: dict[str, ResetWatch] = {}
    t0: list[float] = []

    def fault(name: str) -> None:
        watch[name] = ResetWatch(vmboot.vm(lab, name)).start()
        t0.append(time.monotonic())
        code, out, err = vmboot.exec_in(lab, name, ["pkill", "-STOP", "-f", "bin/patroni"])
        assert code == 0, (out, err)

    def back(name: str) -> None:
        vmboot.wait_settled(vmboot.vm(lab, name), 600)

    out = scenarios.run(lab, "watchdog", fault, back)
    w = watch[out.old]
    w.stop()
    console = w.vm.console.read_text(errors="replace")
    if w.at is not None:
        out.notes.append(f"reset after {w.at - t0[0]:.1f}s")
    out.notes.append("softdog fired" if SOFTDOG in console else "no softdog line")
    out.reset_s = None if w.at is None else w.at - t0[0]
    return out
