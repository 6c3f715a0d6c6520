"""bottle's built-in provisioners, one entry point (module) each."""
