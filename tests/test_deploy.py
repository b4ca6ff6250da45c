"""deploy/: the fleet's node configuration is valid, and the compose file runs three nodes, Redis and PostgreSQL."""

from pathlib import Path

import yaml

from twistgate.config import load_text
from twistgate.validation import validate

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
ENVIRON = {
    "TWISTGATE_ADMIN_TOKEN": "t", "REDIS_PASSWORD": "r", "POSTGRES_PASSWORD": "p", "APP_URL": "http://app:8000",
}


def test_node_configuration_is_valid():
    config = load_text((DEPLOY / "node.yaml").read_text(), filename="node.yaml", environ=ENVIRON)
    assert validate(config) == []
    assert config.sections["workers"].auto
    assert config.sections["rate_limiting"].redis is not None
    assert config.sections["auth"].authenticators["keys"].store.startswith("postgresql://")


def test_compose_runs_three_nodes_on_redis_and_postgres():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = [name for name, s in services.items() if s.get("build", {}).get("dockerfile") == "deploy/Containerfile"]
    assert sorted(nodes) == ["gw-a", "gw-b", "gw-c"]
    assert services["redis"]["image"].startswith("redis:") and services["postgres"]["image"].startswith("postgres:")
    for name in nodes:
        assert services[name]["volumes"] == ["./node.yaml:/etc/twistgate/gw.yaml:ro"]
