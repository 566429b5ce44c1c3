# The data in /var/lib/starling is kept on erase (rpm has no purge); remove it by hand.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart starling.service >/dev/null 2>&1 || :
    fi
fi
exit 0
