"""Serve RFC 8461 MTA-STS policies for many domains from one YAML file."""

from .app import PolicyApp, create_app
from .config import Config, ConfigError, DomainConfig, load_config
from .policy import Mode, Policy
from .store import PolicyStore

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DomainConfig",
    "Mode",
    "Policy",
    "PolicyApp",
    "PolicyStore",
    "create_app",
    "load_config",
]
