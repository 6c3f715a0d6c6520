"""bottle-git, the host side: the gate's plan and config, the relay serving a local upstream, the `git` provisioner."""
