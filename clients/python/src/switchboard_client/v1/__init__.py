"""Generated stubs for switchboard.v1 (do not edit; `make clients`)."""
