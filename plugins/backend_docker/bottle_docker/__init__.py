"""bottle's Docker backend: each bottle is a container on a network of its own."""
