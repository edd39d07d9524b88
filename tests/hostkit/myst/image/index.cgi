#!/bin/sh
# The MyST Studio console's sign-in page, version bottom right. Read per request, so the
# console-version fault switch takes effect without a restart.
version=$(cat /etc/myst-studio/faults/console-version 2>/dev/null || cat /etc/myst-studio/version)
printf 'Content-Type: text/html; charset=utf-8\r\n\r\n'
cat <<PAGE
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>MyST Studio</title>
<style>footer { position: fixed; right: 1em; bottom: 1em; }</style></head>
<body>
<header><h1>MyST Studio</h1></header>
<main><form method="post" action="/login"><p>Sign in to MyST Studio</p></form></main>
<footer class="version">Version $version</footer>
</body>
</html>
PAGE
