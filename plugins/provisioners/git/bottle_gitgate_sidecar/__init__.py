"""bottle-git in the sidecar image: the git gate (smart HTTP, pre-receive checks, forwarding upstream) and its checks (stdlib only)."""
