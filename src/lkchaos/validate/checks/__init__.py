"""The checklist's checks, one module per area; importing a module registers its checks."""
