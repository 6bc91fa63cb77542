"""
The optional top-level blocks of the configuration, one frozen value each, for the
capabilities that use them: ``reports`` (TLS reports) and ``publish`` (DNS records).
"""

from .publish import PublishSettings, host_and_port, read_publish_settings
from .reports import ReportsSettings, read_reports_settings, store_url

__all__ = [
    "PublishSettings",
    "ReportsSettings",
    "host_and_port",
    "read_publish_settings",
    "read_reports_settings",
    "store_url",
]
