"""The node's filesystem as seen through --root: paths, atomic writes, ownership, guards.

Boundary: every write the agent makes to the node goes through Root (write_file, ensure_dir,
makedirs). Node paths in the seed are canonical absolute paths ("/etc/patroni/patroni.yml");
Root maps them under the root directory and walks to them one component at a time with
openat-style calls (O_NOFOLLOW | O_DIRECTORY): a symlink anywhere on the way, or a file where a
folder must be, is refused, never followed. It refuses to write inside a protected directory
(compared both as spelled and as real paths), writes via a temporary file + fsync + rename, and
sets owner and mode through the open descriptor. Ownership is applied only when the agent runs
as root. preflight.py checks every one of these rules for the whole seed before the first write.
"""

import binascii
import errno
import grp
import os
import posixpath
import pwd
import stat

from pgha_agent.errors import ApplyFailed
from pgha_agent.log import LOG

MAX_ID = 2 ** 32 - 2  # (uid_t)-1 means "unchanged" to chown: never a real owner
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


MAX_COMPONENT = 200  # leaves room for the temporary name ".NAME.<12 hex>.tmp" (NAME_MAX 255)
MAX_PATH = 4000
MAX_READ = 1 << 20


def canonical_problem(path):
    """Why `path` is not a canonical absolute node path, or None."""
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        return "must be an absolute path other than /"
    if path.startswith("//") or posixpath.normpath(path) != path:
        return "must be canonical (no //, /./, /../ or trailing /)"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "must not hold control characters"
    if len(path) > MAX_PATH or any(len(p) > MAX_COMPONENT for p in path.split("/")):
        return "must have components of at most {} characters".format(MAX_COMPONENT)
    return None


def _only_link(fd, what):
    """Refuse anything but a regular file with one link: a hard link planted in a log or run
    folder would make the agent read or append to the file it points at (/etc/shadow)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ApplyFailed("refusing to use {}: not a regular file".format(what))
    if st.st_nlink != 1:
        raise ApplyFailed("refusing to use {}: it has {} hard links (a planted link is never "
                          "followed)".format(what, st.st_nlink))


def read_regular(path, what=None, dir_fd=None, limit=MAX_READ):
    """The bytes of a regular, singly linked file opened without following a symlink."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ApplyFailed("refusing to read {}: it is a symlink".format(what or path))
        raise
    try:
        _only_link(fd, what or path)
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ApplyFailed("refusing to read {}: larger than {} bytes".format(what or path, limit))
    return data


def inside(path, directory):
    """True if canonical path `path` is `directory` or below it."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def resolve_id(value, database):
    """uid/gid for a name or a number; None if a name does not exist. Raises ValueError for a
    number out of range."""
    if value.isdigit():
        number = int(value)
        if number > MAX_ID:
            raise ValueError("{} is out of range (0..{})".format(value, MAX_ID))
        return number
    try:
        if database == "user":
            return pwd.getpwnam(value).pw_uid
        return grp.getgrnam(value).gr_gid
    except KeyError:
        return None


def lookup_ids(owner, group):
    """(uid, gid) for names or numbers; -1 for a name that cannot be resolved (preflight has
    already refused those when ownership is applied)."""
    try:
        uid, gid = resolve_id(owner, "user"), resolve_id(group, "group")
    except ValueError as exc:
        raise ApplyFailed("bad owner/group {}:{}: {}".format(owner, group, exc))
    return (-1 if uid is None else uid), (-1 if gid is None else gid)


class Root(object):
    """The root directory the agent works in ("/" on a node)."""

    def __init__(self, path, protected=()):
        self.base = os.path.realpath(path)
        self.live = self.base == "/"
        self.protected = [posixpath.normpath(p) for p in protected]
        self.is_root_user = os.geteuid() == 0

    def path(self, node_path):
        """The host path of an absolute node path (for reading)."""
        return os.path.join(self.base, node_path.lstrip("/"))

    def exists(self, node_path):
        return os.path.exists(self.path(node_path))

    def real_protected(self):
        """Real paths (symlinks resolved, under --root) of the protected directories."""
        out = []
        for prot in self.protected:
            real = os.path.realpath(self.path(prot))
            if real == self.base or real.startswith(self.base.rstrip("/") + "/"):
                out.append("/" + os.path.relpath(real, self.base).lstrip("."))
        return out

    def guard(self, node_path):
        """Refuse any write at or below a protected directory (as spelled or as real path)."""
        problem = canonical_problem(node_path)
        if problem:
            raise ApplyFailed("refusing to write {!r}: the path {}".format(node_path, problem))
        for prot in self.protected + self.real_protected():
            if inside(node_path, prot):
                raise ApplyFailed("refusing to write {}: inside protected directory {}".format(
                    node_path, prot))

    def open_dir(self, node_dir, create=False, mode=0o755):
        """A descriptor of node_dir reached without following any symlink; missing folders are
        created (mode for the last one, 0755 above it) when `create`."""
        fd = os.open(self.base, _DIR_FLAGS)
        done = ""
        try:
            for part in [p for p in node_dir.split("/") if p]:
                done += "/" + part
                fd = self._step(fd, part, done, create, mode if done == node_dir else 0o755)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _step(self, fd, part, done, create, mode):
        try:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise ApplyFailed("{} does not exist".format(done))
            self.guard(done)
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise ApplyFailed("cannot create {}: {}".format(done, exc.strerror))
            LOG.info("created directory %s (%04o)", done, mode)
            nxt = self._open_existing(fd, part, done)
        except OSError as exc:
            raise self._not_a_dir(fd, part, done, exc)
        os.close(fd)
        return nxt

    def _open_existing(self, fd, part, done):
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise self._not_a_dir(fd, part, done, exc)

    @staticmethod
    def _not_a_dir(fd, part, done, exc):
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                kind = "a symlink" if os.path.islink(
                    "/proc/self/fd/{}/{}".format(fd, part)) else "not a directory"
            except OSError:
                kind = "not a directory"
            return ApplyFailed("refusing to use {}: it is {} (symlinks are never followed)"
                               .format(done, kind))
        return ApplyFailed("cannot open {}: {}".format(done, exc.strerror))

    def makedirs(self, node_dir, mode=0o755):
        """Create node_dir and missing parents (never in a protected directory)."""
        os.close(self.open_dir(node_dir, create=True, mode=mode))

    def _ownership(self, node_path, owner, group):
        if not self.is_root_user:
            LOG.debug("not running as root: %s keeps the current user as owner (wanted %s:%s)",
                      node_path, owner, group)
            return -1, -1
        return lookup_ids(owner, group)

    def ensure_dir(self, node_path, mode, owner="root", group="root"):
        """Create node_path if missing; set its own mode and owner (never recursively)."""
        self.guard(node_path)
        uid, gid = self._ownership(node_path, owner, group)
        fd = self.open_dir(node_path, create=True, mode=mode)
        try:
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        except OSError as exc:
            raise ApplyFailed("cannot set owner/mode of {}: {}".format(node_path, exc.strerror))
        finally:
            os.close(fd)

    def open_append(self, node_path, mode=0o640):
        """A binary file object appending to node_path (created if missing), reached without
        following any symlink, the file itself included (O_NOFOLLOW)."""
        self.guard(node_path)
        folder, name = posixpath.split(node_path)
        dfd = self.open_dir(folder, create=True)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode, dir_fd=dfd)
        except OSError as exc:
            raise ApplyFailed("cannot open {}: {}".format(node_path, exc.strerror))
        finally:
            os.close(dfd)
        try:
            _only_link(fd, node_path)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "ab")

    def read_file(self, node_path):
        """The bytes of node_path, reached without following any symlink (folders included)
        and refused if it is not a regular file with one link. None if it does not exist."""
        problem = canonical_problem(node_path)
        if problem:
            raise ApplyFailed("refusing to read {!r}: the path {}".format(node_path, problem))
        folder, name = posixpath.split(node_path)
        try:
            dfd = self.open_dir(folder)
        except ApplyFailed:
            if not os.path.lexists(self.path(folder)):
                return None
            raise
        try:
            return read_regular(name, node_path, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ApplyFailed("cannot read {}: {}".format(node_path, exc.strerror))
        finally:
            os.close(dfd)

    def write_file(self, node_path, data, mode=0o644, owner="root", group="root"):
        """Atomically replace node_path with data (bytes), with owner, group and mode."""
        self.guard(node_path)
        folder, name = posixpath.split(node_path)
        uid, gid = self._ownership(node_path, owner, group)
        dfd = self.open_dir(folder, create=True)
        try:
            _atomic_write(dfd, name, data, mode, uid, gid)
        except OSError as exc:
            raise ApplyFailed("cannot write {}: {}".format(node_path, exc.strerror or exc))
        finally:
            os.close(dfd)


def _atomic_write(dfd, name, data, mode, uid, gid):
    """Write `name` in the folder open as dfd: a fresh temporary file (O_EXCL, O_NOFOLLOW), then
    rename over the target. The rename replaces whatever entry is there, never writes through."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "a directory is in the way")
    tmp = ".{}.{}.tmp".format(name, binascii.hexlify(os.urandom(6)).decode())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=dfd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if uid != -1 or gid != -1:
                os.fchown(fh.fileno(), uid, gid)
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise
    try:
        os.fsync(dfd)
    except OSError:
        pass
