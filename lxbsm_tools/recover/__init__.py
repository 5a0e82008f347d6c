"""lxbsm-recover: the change journal of protected files, restores to any
moment and undoing of untrusted sessions (docs/recovery.md)."""
