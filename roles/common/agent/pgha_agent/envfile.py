"""Environment files (systemd EnvironmentFile=, /etc/etcd/etcd.conf, /etc/default/etcd).

It imports nothing from pgha_agent, so builder (deepcheck) loads this very module to read the
env files it generates, and both sides parse them the same way.
"""


def parse_env_file(text):
    """KEY=VALUE lines (optional `export `, matching quotes stripped, # comments skipped)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key] = value
    return env
