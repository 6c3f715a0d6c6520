"""The sidecar host: the services plugins declare (``service``) and the one place that starts them (``runtime``)."""
