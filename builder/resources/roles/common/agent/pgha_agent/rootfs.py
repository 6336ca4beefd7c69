"""The node's filesystem as seen through --root: paths, atomic writes, ownership, guards.

Boundary: every write the agent makes to the node goes through Root.write_file (or
Root.write_marker). Node paths in the seed are absolute ("/etc/patroni/patroni.yml"); Root maps
them under the root directory, refuses to write inside a protected directory, writes via a
temporary file + fsync + rename, and sets owner and mode. Ownership is applied only when the
agent runs as root (names are resolved with the running system's user database).
"""

import grp
import os
import posixpath
import pwd
import tempfile

from pgha_agent.errors import ApplyFailed
from pgha_agent.log import LOG


def inside(path, directory):
    """True if node path `path` is `directory` or below it (both normalised absolute)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def lookup_ids(owner, group):
    """(uid, gid) for names or numbers; -1 for what cannot be resolved (left unchanged)."""
    uid = gid = -1
    try:
        uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        LOG.warning("user %s does not exist: owner left unchanged", owner)
    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        LOG.warning("group %s does not exist: group left unchanged", group)
    return uid, gid


class Root(object):
    """The root directory the agent works in ("/" on a node)."""

    def __init__(self, path, protected=()):
        self.base = os.path.abspath(path)
        self.live = self.base == "/"
        self.protected = [posixpath.normpath(p) for p in protected]
        self.is_root_user = os.geteuid() == 0

    def path(self, node_path):
        """The host path of an absolute node path."""
        return os.path.join(self.base, node_path.lstrip("/"))

    def exists(self, node_path):
        return os.path.exists(self.path(node_path))

    def guard(self, node_path):
        """Refuse any write at or below a protected directory."""
        for prot in self.protected:
            if inside(node_path, prot):
                raise ApplyFailed("refusing to write {}: inside protected directory {}".format(
                    node_path, prot))

    def makedirs(self, node_dir, mode=0o755):
        """Create missing parents of a node directory (never a protected one)."""
        if os.path.isdir(self.path(node_dir)):
            return
        self.guard(node_dir)
        self.makedirs(posixpath.dirname(node_dir), 0o755)
        try:
            os.mkdir(self.path(node_dir), mode)
        except FileExistsError:
            return
        except OSError as exc:
            raise ApplyFailed("cannot create {}: {}".format(node_dir, exc.strerror))
        LOG.info("created directory %s (%04o)", node_dir, mode)

    def _ownership(self, node_path, owner, group):
        if not self.is_root_user:
            LOG.debug("not running as root: %s keeps the current user as owner (wanted %s:%s)",
                      node_path, owner, group)
            return -1, -1
        return lookup_ids(owner, group)

    def ensure_dir(self, node_path, mode, owner="root", group="root"):
        """Create node_path if missing; set its own mode and owner (never recursively)."""
        self.guard(node_path)
        self.makedirs(posixpath.dirname(node_path))
        target = self.path(node_path)
        if not os.path.isdir(target):
            self.makedirs(node_path, mode)
        uid, gid = self._ownership(node_path, owner, group)
        try:
            if uid != -1 or gid != -1:
                os.chown(target, uid, gid)
            os.chmod(target, mode)
        except OSError as exc:
            raise ApplyFailed("cannot set owner/mode of {}: {}".format(node_path, exc.strerror))

    def write_file(self, node_path, data, mode=0o644, owner="root", group="root"):
        """Atomically replace node_path with data (bytes), with owner, group and mode."""
        self.guard(node_path)
        self.makedirs(posixpath.dirname(node_path))
        target = self.path(node_path)
        uid, gid = self._ownership(node_path, owner, group)
        try:
            _atomic_write(target, data, mode, uid, gid)
        except OSError as exc:
            raise ApplyFailed("cannot write {}: {}".format(node_path, exc.strerror or exc))


def _atomic_write(target, data, mode, uid, gid):
    folder, name = os.path.split(target)
    fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if uid != -1 or gid != -1:
                os.fchown(fh.fileno(), uid, gid)
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.rename(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
