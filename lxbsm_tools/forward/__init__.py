"""lxbsm-forward: the trails' records to syslog over TLS and JSON-lines files
(docs/forwarding.md)."""
