"""lxbsm-auditd: the audit daemon (docs/auditd.md).

config   audit_control / audit_user / audit_event / audit_class, strictly
source   the ring read in batches, committed after they are written
trail    OpenBSM trail naming, file tokens, journal, rotation, expiry
feeds    realtime FIFOs with bounded queues and drop counters
privs    dropping to the audit user, capabilities, seccomp (libseccomp via ctypes)
device   finding /dev/lxbsm with pyudev, waiting for the module
daemon   the poll loop and the control commands
main     the command line
"""
