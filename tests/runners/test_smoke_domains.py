"""`sweep=smoke_domains` touches every domain: each registered domain's data is used by one of its parts."""

from __future__ import annotations

from hydra import initialize_config_dir

from runners.sweep import CONF_DIR, _compose
from tasks.zoo.datasets import DOMAINS


def test_smoke_domains_has_a_part_in_every_domain():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parts = list(_compose(["sweep=smoke_domains"]).parts)
        domains = {DOMAINS[_compose([f"sweep={part}"]).data.name] for part in parts}
    assert parts == ["smoke", "smoke_vision", "smoke_language", "smoke_graph"]
    assert domains == set(DOMAINS.values()) == {"synthetic", "vision", "language", "graph"}
