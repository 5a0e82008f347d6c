#!/bin/sh
# Runs inside the demo guest, with lxbsm.ko loaded by lxbsm-vm.
set -e
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "the module is loaded ($(uname -r))"
grep '^lxbsm ' /proc/modules
dmesg | grep 'lxbsm:' | tail -n 2
ls -l /dev/lxbsm

step "start the audit daemon: exec, process life and failed reads, with arguments"
# In the guest /etc/shadow cannot be written; the passwd entry is all the daemon needs.
getent passwd audit >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin audit 2>/dev/null || getent passwd audit >/dev/null
mkdir -p /tmp/demo/trails
cat >/tmp/demo/audit_control <<'AC'
dir:/tmp/demo/trails
flags:ex,pc,-fr
naflags:ex,pc,-fr
policy:cnt,argv
filesz:2M
exec_control:/tmp/demo/exec_control
AC
cat /tmp/demo/audit_control
printf 'mode: enforce\ndeny /usr/bin/df\n' >/tmp/demo/exec_control
cat /tmp/demo/exec_control
lxbsm-auditd --control /tmp/demo/audit_control --socket /tmp/demo/auditd.sock
sleep 1

step "a user's session: a symlink, a script, a failed read"
cd /tmp/demo
printf '#!/bin/sh\nid -un\n' >whoami.sh && chmod +x whoami.sh
ln -sf /usr/bin/uname hello
./hello -r
./whoami.sh
cat /etc/no-such-file || true
sleep 0.5

step "command control: df is denied however it is reached; the shell keeps running"
ln -sf /usr/bin/df disk
./disk / || echo "exit status $?"
sh -c 'c=d; c=${c}f; $c /' || echo "exit status $?"
lxbsm-audit rules
sleep 0.5

step "rotate the trail (lxbsm-audit -n) and print what the kernel recorded"
lxbsm-audit --socket /tmp/demo/auditd.sock -n
ls -l /tmp/demo/trails
lxbsm-praudit -l /tmp/demo/trails/2* | grep -E 'execve|open' | grep -v -E 'python3|lxbsm-' | cut -c1-220

step "the refused commands, with the rule that refused them (lxbsm-auditreduce -m AUE_EXECVE)"
lxbsm-auditreduce -m AUE_EXECVE /tmp/demo/trails/2* | lxbsm-praudit -l | grep 'text,exec_control' | cut -c1-260

step "only the failures, across every trail (lxbsm-auditreduce -c -fr)"
lxbsm-auditreduce -c -fr /tmp/demo/trails/2* | lxbsm-praudit | grep -A5 'no-such-file' | head -n 8

step "lxbsm-audit status"
lxbsm-audit --socket /tmp/demo/auditd.sock status

step "stop the daemon (lxbsm-audit -t): the trail is closed and named"
lxbsm-audit --socket /tmp/demo/auditd.sock -t
sleep 1
ls /tmp/demo/trails
