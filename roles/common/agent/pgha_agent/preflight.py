"""Every path apply() will write, checked before the first write: a bad seed or a hostile tree
under --root changes nothing at all.

Boundary: reads the tree under --root with lstat only (a symlink is never followed) and the
user database; writes nothing. Raises ApplyFailed with one line naming the path and the rule:
  - every target is canonical, under --root, and outside every protected directory, compared
    both as spelled and as real path (a protected directory may itself be a symlink);
  - no component of a target's path is a symlink, and each one above it is a directory;
  - no directory sits where a file goes, and no file where a directory goes;
  - owners and groups resolve (numbers in range; names exist when the agent runs as root);
  - a seed directory above a protected one is never narrowed (no permission bit removed, no
    owner change): the database below it must stay reachable.
"""

import os
import stat

from pgha_agent import system
from pgha_agent.errors import ApplyFailed
from pgha_agent.log import LOG
from pgha_agent.rootfs import inside, resolve_id


class Target(object):
    def __init__(self, kind, path, owner="root", group="root", mode=0o644):
        self.kind, self.path, self.owner, self.group, self.mode = kind, path, owner, group, mode


def targets(root, seed, network, marker_dir, marker):
    """Everything apply() writes, in order: system files, directories, seed files, marker."""
    out = [Target("file", "/etc/hostname")]
    if network == "always" or (network == "auto" and not system.cloud_init_did_network(root)):
        out.append(Target("file", system.KEYFILE, mode=0o600))
    out += [Target("dir", d["path"], d["owner"], d["group"], int(d["mode"], 8))
            for d in seed.directories]
    out += [Target("file", f["path"], f["owner"], f["group"], int(f["mode"], 8))
            for f in seed.files]
    out += [Target("dir", marker_dir, mode=0o700), Target("file", marker, mode=0o600)]
    return out


def _refuse(path, why):
    return ApplyFailed("refusing {}: {}; nothing was changed".format(path, why))


def _walk(root, target):
    """lstat each component from / down to the target."""
    parts = [p for p in target.path.split("/") if p]
    done = ""
    for i, part in enumerate(parts):
        done += "/" + part
        try:
            st = os.lstat(root.path(done))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _refuse(target.path, "cannot inspect {} ({})".format(done, exc.strerror))
        last = i == len(parts) - 1
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(target.path, "{} is a symlink (symlinks are never followed; use the "
                                       "real path in the seed)".format(done))
        if not last and not stat.S_ISDIR(st.st_mode):
            raise _refuse(target.path, "{} is not a directory".format(done))
        if last and target.kind == "dir" and not stat.S_ISDIR(st.st_mode):
            raise _refuse(target.path, "a file is where the directory must go")
        if last and target.kind == "file" and not stat.S_ISREG(st.st_mode):
            raise _refuse(target.path, "a directory or special file is where the file must go")
        if last:
            return st
    return None


def _ids(root, target):
    ids = []
    for value, database in ((target.owner, "user"), (target.group, "group")):
        try:
            number = resolve_id(value, database)
        except ValueError as exc:
            raise _refuse(target.path, "{} {}".format(database, exc))
        if number is None and root.is_root_user:
            raise _refuse(target.path, "{} {} does not exist on this node".format(database, value))
        if number is None:
            LOG.warning("%s %s does not exist: %s keeps the current owner", database, value,
                        target.path)
        ids.append(number)
    return ids


def _narrowing(root, target, st, uid, gid, protected):
    below = [p for p in protected if p != target.path and inside(p, target.path)]
    if target.kind != "dir" or st is None or not below:
        return
    old = stat.S_IMODE(st.st_mode)
    if old & ~target.mode:
        raise _refuse(target.path, "it is above protected {} and mode {:04o} would narrow its "
                                   "mode {:04o}".format(below[0], target.mode, old))
    if root.is_root_user and (uid not in (None, st.st_uid) or gid not in (None, st.st_gid)):
        raise _refuse(target.path, "it is above protected {}: its owner is not changed".format(
            below[0]))


def _clashes(entries):
    kinds = {}
    for t in entries:
        if kinds.setdefault(t.path, t.kind) != t.kind:
            raise _refuse(t.path, "the seed wants both a file and a directory there")
    for t in entries:
        for other in entries:
            if other.path != t.path and inside(other.path, t.path) and t.kind == "file":
                raise _refuse(other.path, "{} is a file in the seed, not a directory".format(
                    t.path))


def check(root, seed, network, marker_dir, marker):
    """Raise ApplyFailed if any write apply() would make is not allowed; write nothing."""
    entries = targets(root, seed, network, marker_dir, marker)
    _clashes(entries)
    protected = root.protected + root.real_protected()
    for t in entries:
        root.guard(t.path)
        st = _walk(root, t)
        uid, gid = _ids(root, t)
        _narrowing(root, t, st, uid, gid, protected)
    return entries
