# Creates the starling system user before the files are installed.
getent group starling >/dev/null || groupadd --system starling
getent passwd starling >/dev/null || useradd --system --gid starling \
    --home-dir /var/lib/starling --no-create-home --shell /sbin/nologin \
    --comment "Starling syslog collector" starling
exit 0
