"""SELinux booleans the node's services need (seed `selinux_booleans`), checked before they start.

Boundary: on a live node (--root /) with SELinux enabled (`selinuxenabled`), each boolean must
be on now (`getsebool NAME` says "--> on") and stored in the policy (`semanage boolean -l -C`
lists it as a local customisation whose stored value, the second in "(on , on)", is on; see
SELinuxProject/selinux python/semanage/seobject.py booleanRecords.list). The role RPM stores it in %post with
`semanage boolean -N`, which works while SELinux is off during an image build; this check
catches a build where that did not happen. A boolean that is off is turned on with
`semanage boolean -m --on NAME` (stored and active); one that stays off stops the agent with
one line saying what the service cannot do and the command that fixes it. With SELinux
disabled, or under another --root, nothing is checked.
"""

import re

from pgha_agent import run
from pgha_agent.errors import ApplyFailed
from pgha_agent.log import LOG

# What each boolean grants, for the message when it cannot be turned on.
WHY = {
    "haproxy_connect_any": "HAProxy cannot bind 6000 (xserver_port_t) and 7000 "
                           "(gatekeeper_port_t) nor connect to PostgreSQL on 5432 "
                           "(postgresql_port_t)",
}


def is_on(name):
    """(active now, stored in the policy) for one boolean."""
    now = run.run(["getsebool", name], check=False)
    active = now.returncode == 0 and now.stdout.strip().endswith("--> on")
    listed = run.run(["semanage", "boolean", "-l", "-C"], check=False)
    stored = False
    # `semanage boolean -l -C` lists local customisations as "NAME (ACTIVE , STORED) text":
    # the first value is the running one, the second the one stored in the policy.
    for line in listed.stdout.splitlines():
        m = re.match(r"^(\S+)\s+\(\s*(on|off)\s*,\s*(on|off)\s*\)", line)
        if m and m.group(1) == name:
            stored = m.group(3) == "on"
    return active, stored


def enabled(root):
    if not root.live:
        return False
    if not run.which("selinuxenabled"):
        return False
    return run.run(["selinuxenabled"], check=False).returncode == 0


def ensure_booleans(root, names):
    """Every boolean on (active and stored) before the services start; else ApplyFailed."""
    if not names:
        return
    if not enabled(root):
        LOG.info("selinux: disabled or not a live node: booleans %s not checked",
                 ", ".join(names))
        return
    for name in names:
        active, stored = is_on(name)
        if active and stored:
            LOG.info("selinux: %s is on", name)
            continue
        LOG.warning("selinux: %s is %s: turning it on (semanage boolean -m --on %s)", name,
                    "on but not stored in the policy" if active else "off", name)
        fixed = run.run(["semanage", "boolean", "-m", "--on", name], check=False)
        if fixed.returncode == 0 and is_on(name) == (True, True):
            LOG.info("selinux: %s is on", name)
            continue
        detail = (fixed.stderr or fixed.stdout or "").strip().splitlines()[-1:]
        raise ApplyFailed("selinux boolean {} is off and could not be turned on{}: {}; fix it "
                          "with `semanage boolean -m --on {}`, then restart "
                          "pgha-firstboot".format(name, ": " + detail[0] if detail else "",
                                                  WHY.get(name, "the role's services need it"),
                                                  name))
