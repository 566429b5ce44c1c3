install -d -o starling -g starling -m 0750 /var/lib/starling
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now starling.service >/dev/null 2>&1 || :
    fi
fi
exit 0
