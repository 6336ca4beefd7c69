"""builder.core.fastyaml: libyaml's loader and emitter give the same data and the same text as
PyYAML's pure-Python safe ones on what the build writes and reads."""

from __future__ import annotations

import yaml

from builder.core import fastyaml
from builder.core.context import Context
from builder.core.paths import ROLES_DIR
from builder.model.cluster import Cluster
from builder.stages import monitoring, monitoring_tests, seeds


def test_libyaml_is_used_here() -> None:
    """scripts/setup installs PyYAML with libyaml: the fast path is the one CI measures."""
    assert yaml.__with_libyaml__ and fastyaml.DUMPER is yaml.CSafeDumper


def test_same_text_as_safe_dump(ctx: Context) -> None:
    cluster: Cluster = ctx.cluster
    docs = [
        ({"groups": [{"name": "g", "rules": monitoring.rules(cluster)}]}, {"width": 100}),
        ({"tests": monitoring_tests.tests(cluster)[0]}, {"width": 120}),
        (monitoring.scrape_config(cluster), {"width": 100}),
        *((seeds.network_config(ctx, n), {}) for n in cluster.nodes),
        ({"quote": "a: b", "empty": "", "multi": "x\ny", "odd": "%{NAME} @ 'q' \"d\"",
          "num": "0123", "yes": "yes", "unicode": "é ü", "long": "w " * 80}, {}),
    ]
    for doc, options in docs:
        assert fastyaml.dump(doc, sort_keys=False, **options) == yaml.safe_dump(
            doc, sort_keys=False, **options)


def test_same_data_as_safe_load() -> None:
    files = [*ROLES_DIR.glob("*/role.yaml"), monitoring.ALERTS, monitoring_tests.FAULTS]
    assert len(files) > 3
    for path in files:
        text = path.read_text()
        assert fastyaml.load(text) == yaml.safe_load(text), path
